"""A hostile TLS 1.2 client for test/security/attacks.test.ts: connects with certificate A, then renegotiates
on the same connection presenting certificate B (Node's own TLS client cannot change its certificate).

Usage: renegotiating-client.py PORT CERT_A KEY_A CERT_B KEY_B [REQUEST]
Sends REQUEST (default "1\n") before and after the renegotiation and prints one JSON line: what the server answered each
time, whether the renegotiation completed, and the error that ended the connection, if any.
"""
import json
import socket
import sys

from OpenSSL import SSL, crypto


def main() -> None:
    port, cert_a, key_a, cert_b, key_b = sys.argv[1:6]
    request = (sys.argv[6] if len(sys.argv) > 6 else "1\n").encode()
    ctx = SSL.Context(SSL.TLSv1_2_METHOD)
    ctx.set_verify(SSL.VERIFY_NONE, lambda *_: True)
    ctx.use_certificate_chain_file(cert_a)
    ctx.use_privatekey_file(key_a)
    sock = socket.create_connection(("127.0.0.1", int(port)))
    sock.settimeout(None)  # pyOpenSSL needs a blocking socket; the test bounds the process's run time
    conn = SSL.Connection(ctx, sock)
    conn.set_connect_state()
    out = {"before": None, "renegotiated": False, "after": None, "error": None}
    try:
        conn.do_handshake()
        conn.sendall(request)
        out["before"] = conn.recv(4096).decode()
        with open(cert_b, "rb") as f:
            conn.use_certificate(crypto.load_certificate(crypto.FILETYPE_PEM, f.read()))
        with open(key_b, "rb") as f:
            conn.use_privatekey(crypto.load_privatekey(crypto.FILETYPE_PEM, f.read()))
        conn.renegotiate()
        conn.do_handshake()
        # The new handshake finishes while application data flows.
        conn.sendall(request)
        out["after"] = conn.recv(4096).decode()
        out["renegotiated"] = conn.total_renegotiations() > 0 and not conn.renegotiate_pending()
    except Exception as e:  # any failure ends the attack; report it
        out["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(out))


main()
