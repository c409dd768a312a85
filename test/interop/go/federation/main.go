// federation: go-spiffe's SPIFFE federation bundle endpoint client and server. Modes (-mode):
//
//	fetch  federation.FetchBundle of trust domain -td from -url, then prints
//	       {"trustDomain","x509Authorities":n,"jwtKids":[...],"sequenceNumber":n|null,"refreshHint":seconds|null}
//	       -profile https_spiffe: -endpoint-id <SPIFFE ID> -bundle <file> (the endpoint's trust domain bundle,
//	       SPIFFE bundle JSON or PEM certificates)
//	       -profile https_web:    -ca <PEM file> (roots instead of the system ones)
//	serve  serves -bundle (SPIFFE bundle JSON of -td, read again on every request, so a test can rotate it
//	       by rewriting the file) with federation.NewHandler on -addr, then prints {"address","url"}
//	       -profile https_spiffe: -svid-cert <PEM chain> -svid-key <PEM PKCS#8 key> (an X.509-SVID)
//	       -profile https_web:    -web-cert <PEM chain> -web-key <PEM key>
//
// Errors print {"error"} and exit 1.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func main() {
	mode := flag.String("mode", "fetch", "fetch | serve")
	profile := flag.String("profile", "https_spiffe", "https_spiffe | https_web")
	td := flag.String("td", "", "trust domain of the bundle")
	url := flag.String("url", "", "bundle endpoint URL (fetch)")
	endpointID := flag.String("endpoint-id", "", "SPIFFE ID the endpoint must present (fetch, https_spiffe)")
	bundleFile := flag.String("bundle", "", "fetch: bundle of the endpoint's trust domain; serve: the bundle to serve")
	caFile := flag.String("ca", "", "PEM roots (fetch, https_web)")
	addr := flag.String("addr", "127.0.0.1:0", "listen address (serve)")
	svidCert := flag.String("svid-cert", "", "X.509-SVID chain, PEM (serve, https_spiffe)")
	svidKey := flag.String("svid-key", "", "X.509-SVID key, PEM PKCS#8 (serve, https_spiffe)")
	webCert := flag.String("web-cert", "", "server certificate chain, PEM (serve, https_web)")
	webKey := flag.String("web-key", "", "server key, PEM (serve, https_web)")
	timeout := flag.Duration("timeout", 30*time.Second, "fetch timeout")
	flag.Parse()

	trustDomain, err := spiffeid.TrustDomainFromString(*td)
	if err != nil {
		fail(fmt.Errorf("-td: %w", err))
	}
	switch *mode {
	case "fetch":
		fetch(trustDomain, *url, *profile, *endpointID, *bundleFile, *caFile, *timeout)
	case "serve":
		serve(trustDomain, *addr, *profile, *bundleFile, *svidCert, *svidKey, *webCert, *webKey)
	default:
		fail(fmt.Errorf("unknown -mode %q", *mode))
	}
}

func fetch(td spiffeid.TrustDomain, url, profile, endpointID, bundleFile, caFile string, timeout time.Duration) {
	var opt federation.FetchOption
	switch profile {
	case "https_spiffe":
		id, err := spiffeid.FromString(endpointID)
		if err != nil {
			fail(fmt.Errorf("-endpoint-id: %w", err))
		}
		roots, err := loadRoots(id.TrustDomain(), bundleFile)
		if err != nil {
			fail(err)
		}
		opt = federation.WithSPIFFEAuth(roots, id)
	case "https_web":
		pool := x509.NewCertPool()
		pem, err := os.ReadFile(caFile)
		if err != nil {
			fail(err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			fail(fmt.Errorf("-ca %s: no PEM certificates", caFile))
		}
		opt = federation.WithWebPKIRoots(pool)
	default:
		fail(fmt.Errorf("unknown -profile %q", profile))
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	b, err := federation.FetchBundle(ctx, td, url, opt)
	if err != nil {
		fail(err)
	}
	kids := []string{}
	for kid := range b.JWTAuthorities() {
		kids = append(kids, kid)
	}
	sort.Strings(kids)
	out := map[string]any{
		"trustDomain":     b.TrustDomain().String(),
		"x509Authorities": len(b.X509Authorities()),
		"jwtKids":         kids,
		"sequenceNumber":  nil,
		"refreshHint":     nil,
	}
	if seq, ok := b.SequenceNumber(); ok {
		out["sequenceNumber"] = seq
	}
	if hint, ok := b.RefreshHint(); ok {
		out["refreshHint"] = hint.Seconds()
	}
	print(out)
}

// loadRoots reads the endpoint trust domain's bundle: SPIFFE bundle JSON, or else PEM certificates.
func loadRoots(td spiffeid.TrustDomain, file string) (x509bundle.Source, error) {
	if b, err := spiffebundle.Load(td, file); err == nil {
		return b.X509Bundle(), nil
	}
	b, err := x509bundle.Load(td, file)
	if err != nil {
		return nil, fmt.Errorf("-bundle %s: neither a SPIFFE bundle nor PEM certificates: %w", file, err)
	}
	return b, nil
}

// fileSource reads the bundle file on every request.
type fileSource struct {
	td   spiffeid.TrustDomain
	file string
}

func (s fileSource) GetBundleForTrustDomain(td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	if td != s.td {
		return nil, fmt.Errorf("no bundle for %q", td)
	}
	return spiffebundle.Load(s.td, s.file)
}

func serve(td spiffeid.TrustDomain, addr, profile, bundleFile, svidCert, svidKey, webCert, webKey string) {
	if _, err := spiffebundle.Load(td, bundleFile); err != nil {
		fail(fmt.Errorf("-bundle: %w", err))
	}
	handler, err := federation.NewHandler(td, fileSource{td: td, file: bundleFile})
	if err != nil {
		fail(err)
	}
	var tlsConfig *tls.Config
	switch profile {
	case "https_spiffe":
		svid, err := x509svid.Load(svidCert, svidKey)
		if err != nil {
			fail(fmt.Errorf("-svid-cert/-svid-key: %w", err))
		}
		tlsConfig = tlsconfig.TLSServerConfig(svid)
	case "https_web":
		cert, err := tls.LoadX509KeyPair(webCert, webKey)
		if err != nil {
			fail(fmt.Errorf("-web-cert/-web-key: %w", err))
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	default:
		fail(fmt.Errorf("unknown -profile %q", profile))
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fail(err)
	}
	srv := &http.Server{Handler: handler, TLSConfig: tlsConfig, ReadHeaderTimeout: 10 * time.Second}
	print(map[string]any{"address": ln.Addr().String(), "url": "https://" + ln.Addr().String() + "/"})
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		_ = srv.Close()
	}()
	if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fail(err)
	}
}

func print(v any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

func fail(err error) {
	print(map[string]any{"error": err.Error()})
	os.Exit(1)
}
