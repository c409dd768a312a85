// Command verdict reads differential test cases (one JSON object per line) on stdin and prints go-spiffe's
// verdict for each one (one JSON object per line, same order) on stdout. Only go-spiffe's public APIs decide.
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"crypto/x509"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

type testCase struct {
	ID       string              `json:"id"`
	Kind     string              `json:"kind"`
	Input    string              `json:"input"`
	TD       string              `json:"td"`
	Segments []string            `json:"segments"`
	Path     string              `json:"path"`
	Chain    []string            `json:"chain"`
	Roots    map[string][]string `json:"roots"`
	Now      string              `json:"now"`
	Key      string              `json:"key"`
	Token    string              `json:"token"`
	JWKS     map[string]string   `json:"jwks"`
	Audience []string            `json:"audience"`
	Doc      string              `json:"doc"`
}

type verdict struct {
	ID     string `json:"id"`
	OK     bool   `json:"ok"`
	Result string `json:"result,omitempty"`
	Error  string `json:"error,omitempty"`
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	for in.Scan() {
		var c testCase
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			fmt.Fprintf(os.Stderr, "bad case line: %v\n", err)
			os.Exit(2)
		}
		result, err := judge(&c)
		v := verdict{ID: c.ID, OK: err == nil, Result: result}
		if err != nil {
			v.Result = ""
			v.Error = err.Error()
		}
		if err := enc.Encode(v); err != nil {
			fmt.Fprintf(os.Stderr, "write: %v\n", err)
			os.Exit(2)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "read: %v\n", err)
		os.Exit(2)
	}
}

func judge(c *testCase) (result string, err error) {
	// A panic in go-spiffe is a verdict too (reject), recorded with its message.
	defer func() {
		if r := recover(); r != nil {
			result, err = "", fmt.Errorf("panic: %v", r)
		}
	}()
	switch c.Kind {
	case "id":
		id, err := spiffeid.FromString(c.Input)
		if err != nil {
			return "", err
		}
		return id.String() + "|" + id.TrustDomain().Name() + "|" + id.Path(), nil
	case "td":
		td, err := spiffeid.TrustDomainFromString(c.Input)
		if err != nil {
			return "", err
		}
		return td.Name(), nil
	case "segments":
		td, err := spiffeid.TrustDomainFromString(c.TD)
		if err != nil {
			return "", err
		}
		id, err := spiffeid.FromSegments(td, c.Segments...)
		if err != nil {
			return "", err
		}
		return id.String(), nil
	case "path":
		td, err := spiffeid.TrustDomainFromString(c.TD)
		if err != nil {
			return "", err
		}
		id, err := spiffeid.FromPath(td, c.Path)
		if err != nil {
			return "", err
		}
		return id.String(), nil
	case "chain":
		return verifyChain(c)
	case "svid":
		return parseSvid(c)
	case "token":
		return validateToken(c)
	case "bundle":
		return parseBundle(c)
	}
	return "", fmt.Errorf("unknown case kind %q", c.Kind)
}

func decodeAll(items []string) ([][]byte, error) {
	out := make([][]byte, 0, len(items))
	for _, s := range items {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

func verifyChain(c *testCase) (string, error) {
	raw, err := decodeAll(c.Chain)
	if err != nil {
		return "", err
	}
	set := x509bundle.NewSet()
	for name, roots := range c.Roots {
		td, err := spiffeid.TrustDomainFromString(name)
		if err != nil {
			return "", err
		}
		ders, err := decodeAll(roots)
		if err != nil {
			return "", err
		}
		var certs []*x509.Certificate
		for _, der := range ders {
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				return "", fmt.Errorf("harness: root for %s: %w", name, err)
			}
			certs = append(certs, cert)
		}
		set.Add(x509bundle.FromX509Authorities(td, certs))
	}
	now, err := time.Parse(time.RFC3339, c.Now)
	if err != nil {
		return "", err
	}
	id, _, err := x509svid.ParseAndVerify(raw, set, x509svid.WithTime(now))
	if err != nil {
		return "", err
	}
	return id.String(), nil
}

func parseSvid(c *testCase) (string, error) {
	raw, err := decodeAll(c.Chain)
	if err != nil {
		return "", err
	}
	key, err := base64.StdEncoding.DecodeString(c.Key)
	if err != nil {
		return "", err
	}
	svid, err := x509svid.ParseRaw(concat(raw), key)
	if err != nil {
		return "", err
	}
	return svid.ID.String(), nil
}

func concat(parts [][]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func validateToken(c *testCase) (string, error) {
	set := jwtbundle.NewSet()
	for name, jwks := range c.JWKS {
		td, err := spiffeid.TrustDomainFromString(name)
		if err != nil {
			return "", err
		}
		b, err := jwtbundle.Parse(td, []byte(jwks))
		if err != nil {
			return "", fmt.Errorf("harness: JWT bundle for %s: %w", name, err)
		}
		set.Add(b)
	}
	svid, err := jwtsvid.ParseAndValidate(c.Token, set, c.Audience)
	if err != nil {
		return "", err
	}
	return svid.ID.String() + "|aud=" + strings.Join(svid.Audience, ",") + "|exp=" + strconv.FormatInt(svid.Expiry.Unix(), 10), nil
}

func parseBundle(c *testCase) (string, error) {
	td, err := spiffeid.TrustDomainFromString(c.TD)
	if err != nil {
		return "", err
	}
	b, err := spiffebundle.Parse(td, []byte(c.Doc))
	if err != nil {
		return "", err
	}
	kids := make([]string, 0)
	for kid := range b.JWTAuthorities() {
		kids = append(kids, kid)
	}
	sort.Strings(kids)
	seq := "-"
	if s, ok := b.SequenceNumber(); ok {
		seq = strconv.FormatUint(s, 10)
	}
	hint := "-"
	if h, ok := b.RefreshHint(); ok {
		hint = strconv.FormatInt(int64(h/time.Second), 10)
	}
	return fmt.Sprintf("x509=%d|jwt=%s|seq=%s|hint=%s", len(b.X509Authorities()), strings.Join(kids, ","), seq, hint), nil
}
