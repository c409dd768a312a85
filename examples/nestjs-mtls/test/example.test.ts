import assert from 'node:assert/strict';
import { test } from 'node:test';
import { demo } from '../src/demo.js';

test('nestjs-mtls demo: payment-processor allowed, inventory rejected', async () => {
  const lines: string[] = [];
  const ok = await demo((l) => lines.push(l));
  assert.equal(ok, true, lines.join('\n'));
  assert.ok(
    lines.some((l) => l.startsWith('ALLOWED  spiffe://example.org/service/payment-processor -> GET /orders: 200')),
  );
  assert.ok(lines.some((l) => l.startsWith('REJECTED spiffe://example.org/service/inventory -> GET /orders: 403')));
});
