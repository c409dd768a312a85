// mtls-client: GETs -url over go-spiffe's MTLSClientConfig with an X509Source from the Workload API at
// -workload-api, accepting only a server whose SPIFFE ID is -server-id (or a member of -server-td).
// Prints one JSON line per request {"status","body"} or {"error"}; exits 1 if any request failed.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

func main() {
	addr := flag.String("workload-api", os.Getenv("SPIFFE_ENDPOINT_SOCKET"), "Workload API address")
	url := flag.String("url", "", "https URL to GET")
	serverID := flag.String("server-id", "", "expected server SPIFFE ID")
	serverTD := flag.String("server-td", "", "expected server trust domain (instead of -server-id)")
	n := flag.Int("n", 1, "number of requests (one keep-alive connection)")
	flag.Parse()

	var authorizer tlsconfig.Authorizer
	switch {
	case *serverID != "":
		authorizer = tlsconfig.AuthorizeID(spiffeid.RequireFromString(*serverID))
	case *serverTD != "":
		authorizer = tlsconfig.AuthorizeMemberOf(spiffeid.RequireTrustDomainFromString(*serverTD))
	default:
		log.Fatal("give -server-id or -server-td")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	source, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(*addr)))
	if err != nil {
		log.Fatalf("X509Source: %v", err)
	}
	defer source.Close()

	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: tlsconfig.MTLSClientConfig(source, source, authorizer)},
	}
	failed := false
	for i := 0; i < *n; i++ {
		res, err := client.Get(*url)
		var line []byte
		if err != nil {
			failed = true
			line, _ = json.Marshal(map[string]string{"error": err.Error()})
		} else {
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			line, _ = json.Marshal(map[string]any{"status": res.StatusCode, "body": string(body)})
		}
		fmt.Println(string(line))
	}
	if failed {
		os.Exit(1)
	}
}
