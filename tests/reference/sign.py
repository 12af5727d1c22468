"""Signs a webhook with the senders' own reference libraries, for handoff's tests.

Reads a JSON request on stdin: {"scheme", "secret", "body", "id", "timestamp", "method", "uri"}
and prints the headers the real sender would send, as a JSON object.

  standard_webhooks  the `standardwebhooks` package (webhook-* headers)
  svix               the `svix` package (svix-* headers)
  hubspot_v3         `hubspot-api-client`'s hubspot.utils.signature.Signature
"""
import json
import sys
from datetime import datetime, timezone


def main():
    req = json.load(sys.stdin)
    scheme, secret, body = req["scheme"], req["secret"], req["body"]
    if scheme == "standard_webhooks":
        from standardwebhooks.webhooks import Webhook

        ts = datetime.fromtimestamp(req["timestamp"], tz=timezone.utc)
        sig = Webhook(secret).sign(req["id"], ts, body)
        headers = {"webhook-id": req["id"], "webhook-timestamp": str(req["timestamp"]), "webhook-signature": sig}
    elif scheme == "svix":
        from svix.webhooks import Webhook

        ts = datetime.fromtimestamp(req["timestamp"], tz=timezone.utc)
        sig = Webhook(secret).sign(req["id"], ts, body)
        headers = {"svix-id": req["id"], "svix-timestamp": str(req["timestamp"]), "svix-signature": sig}
    elif scheme == "hubspot_v3":
        from hubspot.utils.signature import Signature

        ts = str(req["timestamp"])
        sig = Signature.get_signature(secret, body, "v3", http_uri=req["uri"], http_method=req["method"], timestamp=ts)
        headers = {"X-HubSpot-Signature-v3": sig, "X-HubSpot-Request-Timestamp": ts}
    else:
        sys.exit(f"unknown scheme {scheme}")
    json.dump(headers, sys.stdout)


if __name__ == "__main__":
    main()
