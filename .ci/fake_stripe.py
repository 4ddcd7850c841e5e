# A stand-in Stripe for the fuzzing stage: answers every call gemchat makes with a valid shape.
import json, sys
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def reply(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200); self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_GET(self):
        self.reply({"id": "price_pro", "object": "price", "unit_amount": 999, "currency": "usd", "recurring": {"interval": "month"}})
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        p = self.path
        if p.startswith("/v1/customers"): self.reply({"id": "cus_fuzz", "object": "customer"})
        elif p.startswith("/v1/checkout/sessions"): self.reply({"id": "cs_fuzz", "object": "checkout.session", "url": "https://checkout.stripe.com/c/pay/cs_fuzz"})
        elif p.startswith("/v1/billing_portal"): self.reply({"id": "bps_fuzz", "url": "https://billing.stripe.com/p/session/fuzz"})
        else: self.reply({"id": p.rsplit("/", 1)[-1], "object": "subscription", "customer": "cus_fuzz", "status": "active", "cancel_at_period_end": False, "items": {"data": []}})
    def do_DELETE(self):
        # Cancelling a subscription at once, deleting a customer (account deletion).
        kind = "customer" if self.path.startswith("/v1/customers") else "subscription"
        self.reply({"id": self.path.rsplit("/", 1)[-1], "object": kind, "deleted": True, "status": "canceled"})
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
