// mtls-server: an HTTPS server whose TLS is go-spiffe's MTLSServerConfig, fed by an X509Source from the
// Workload API at -workload-api. Only client IDs matching -allow / -allow-td complete the handshake.
// Prints one JSON line {"address","id"} once listening; each response is JSON {"peer","server"}.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	addr := flag.String("workload-api", os.Getenv("SPIFFE_ENDPOINT_SOCKET"), "Workload API address (unix:///path or tcp://host:port)")
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	var allow, allowTD list
	flag.Var(&allow, "allow", "client SPIFFE ID to allow (repeatable)")
	flag.Var(&allowTD, "allow-td", "trust domain whose members are allowed (repeatable)")
	flag.Parse()

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	startCtx, startCancel := context.WithTimeout(ctx, 30*time.Second)
	defer startCancel()
	source, err := workloadapi.NewX509Source(startCtx, workloadapi.WithClientOptions(workloadapi.WithAddr(*addr)))
	if err != nil {
		log.Fatalf("X509Source: %v", err)
	}
	defer source.Close()

	authorizer, err := buildAuthorizer(allow, allowTD)
	if err != nil {
		log.Fatal(err)
	}
	svid, err := source.GetX509SVID()
	if err != nil {
		log.Fatal(err)
	}
	tlsConfig := tlsconfig.MTLSServerConfig(source, source, authorizer)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	server := &http.Server{
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			peer := ""
			if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 && len(r.TLS.PeerCertificates[0].URIs) == 1 {
				peer = r.TLS.PeerCertificates[0].URIs[0].String()
			}
			own, _ := source.GetX509SVID()
			w.Header().Set("content-type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]string{"peer": peer, "server": own.ID.String(), "path": r.URL.Path})
		}),
	}
	out, _ := json.Marshal(map[string]string{"address": ln.Addr().String(), "id": svid.ID.String()})
	fmt.Println(string(out))
	go func() {
		<-ctx.Done()
		_ = server.Close()
	}()
	if err := server.ServeTLS(ln, "", ""); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

func buildAuthorizer(ids, tds []string) (tlsconfig.Authorizer, error) {
	if len(ids) == 0 && len(tds) == 0 {
		return nil, fmt.Errorf("give at least one -allow or -allow-td (deny by default)")
	}
	allowed := map[spiffeid.ID]bool{}
	for _, s := range ids {
		id, err := spiffeid.FromString(s)
		if err != nil {
			return nil, err
		}
		allowed[id] = true
	}
	members := map[spiffeid.TrustDomain]bool{}
	for _, s := range tds {
		td, err := spiffeid.TrustDomainFromString(s)
		if err != nil {
			return nil, err
		}
		members[td] = true
	}
	return tlsconfig.AdaptMatcher(func(id spiffeid.ID) error {
		if allowed[id] || members[id.TrustDomain()] {
			return nil
		}
		return fmt.Errorf("unexpected ID %q", id)
	}), nil
}
