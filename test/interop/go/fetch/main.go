// fetch: a go-spiffe Workload API client. Modes (-mode):
//
//	x509      fetch the X.509 context: {"id","trustDomains","chainLength","expiresAt","bundles":{td:count}}
//	jwt       fetch a JWT-SVID for -audience: {"id","token","expiresAt"}
//	jwtbundles fetch the JWT bundles: {"bundles":{td:[kid...]}}
//	validate  validate -token for -audience against the JWT bundles from the Workload API: {"id","claims"}
//	bench     -n fetches each of X.509 and JWT on one client; prints p50/p99 in microseconds
//
// Errors print {"error"} and exit 1.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

func main() {
	addr := flag.String("workload-api", os.Getenv("SPIFFE_ENDPOINT_SOCKET"), "Workload API address")
	mode := flag.String("mode", "x509", "x509 | jwt | jwtbundles | validate | bench")
	audience := flag.String("audience", "", "JWT audience")
	token := flag.String("token", "", "JWT-SVID to validate")
	n := flag.Int("n", 1000, "iterations for -mode bench")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(*addr))
	if err != nil {
		fail(err)
	}
	defer client.Close()

	switch *mode {
	case "x509":
		x, err := client.FetchX509Context(ctx)
		if err != nil {
			fail(err)
		}
		svid := x.DefaultSVID()
		bundles := map[string]int{}
		tds := []string{}
		for _, b := range x.Bundles.Bundles() {
			bundles[b.TrustDomain().String()] = len(b.X509Authorities())
			tds = append(tds, b.TrustDomain().String())
		}
		sort.Strings(tds)
		print(map[string]any{
			"id": svid.ID.String(), "trustDomains": tds, "chainLength": len(svid.Certificates),
			"expiresAt": svid.Certificates[0].NotAfter.UTC().Format(time.RFC3339), "bundles": bundles,
			"svids": len(x.SVIDs),
		})
	case "jwt":
		s, err := client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: *audience})
		if err != nil {
			fail(err)
		}
		print(map[string]any{"id": s.ID.String(), "token": s.Marshal(), "expiresAt": s.Expiry.UTC().Format(time.RFC3339)})
	case "jwtbundles":
		set, err := client.FetchJWTBundles(ctx)
		if err != nil {
			fail(err)
		}
		out := map[string][]string{}
		for _, b := range set.Bundles() {
			kids := []string{}
			for kid := range b.JWTAuthorities() {
				kids = append(kids, kid)
			}
			sort.Strings(kids)
			out[b.TrustDomain().String()] = kids
		}
		print(map[string]any{"bundles": out})
	case "validate":
		set, err := client.FetchJWTBundles(ctx)
		if err != nil {
			fail(err)
		}
		s, err := jwtsvid.ParseAndValidate(*token, set, []string{*audience})
		if err != nil {
			fail(err)
		}
		print(map[string]any{"id": s.ID.String(), "claims": s.Claims})
	case "bench":
		x := timeIt(*n, func() error { _, err := client.FetchX509Context(ctx); return err })
		j := timeIt(*n, func() error {
			_, err := client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "bench"})
			return err
		})
		print(map[string]any{"n": *n, "x509": x, "jwt": j})
	default:
		fail(fmt.Errorf("unknown -mode %q", *mode))
	}
}

func timeIt(n int, f func() error) map[string]float64 {
	d := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		start := time.Now()
		if err := f(); err != nil {
			fail(err)
		}
		d = append(d, float64(time.Since(start).Microseconds()))
	}
	sort.Float64s(d)
	return map[string]float64{"p50us": d[len(d)/2], "p99us": d[len(d)*99/100]}
}

func print(v any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

func fail(err error) {
	print(map[string]string{"error": err.Error()})
	os.Exit(1)
}
