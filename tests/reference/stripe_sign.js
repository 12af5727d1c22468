// Signs a webhook with Stripe's own library (stripe.webhooks.generateTestHeaderString).
// Reads {"secret", "body", "timestamp"} on stdin; prints {"Stripe-Signature": "..."}.
const Stripe = require('stripe');

let input = '';
process.stdin.on('data', (chunk) => (input += chunk));
process.stdin.on('end', () => {
  const req = JSON.parse(input);
  const stripe = Stripe('sk_test_handoff_reference');
  const header = stripe.webhooks.generateTestHeaderString({
    payload: req.body,
    secret: req.secret,
    timestamp: req.timestamp,
  });
  process.stdout.write(JSON.stringify({ 'Stripe-Signature': header }));
});
