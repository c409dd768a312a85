import assert from 'node:assert/strict';
import { test } from 'node:test';
import { demo } from '../src/demo.js';

test('express-jwt demo: payment-processor token accepted, reporting 403, missing and forged tokens 401', async () => {
  const lines: string[] = [];
  const ok = await demo((l) => lines.push(l));
  assert.equal(ok, true, lines.join('\n'));
  assert.ok(lines.some((l) => l.startsWith('ALLOWED  spiffe://example.org/service/payment-processor (JWT-SVID)')));
  assert.ok(
    lines.some((l) => l.startsWith('REJECTED spiffe://example.org/service/reporting (JWT-SVID) -> GET /orders: 403')),
  );
  assert.ok(lines.some((l) => l.startsWith('REJECTED no token -> GET /orders: 401 (Bearer realm="spiffe")')));
  assert.ok(lines.some((l) => l.startsWith('REJECTED forged payment-processor token -> GET /orders: 401')));
});
