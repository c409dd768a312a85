import assert from 'node:assert/strict';
import { test } from 'node:test';
import { demo } from '../src/demo.js';

test('federation demo: partner.test billing allowed across trust domains, partner.test reports rejected', async () => {
  const lines: string[] = [];
  const ok = await demo((l) => lines.push(l));
  assert.equal(ok, true, lines.join('\n'));
  assert.ok(
    lines.some((l) => l.startsWith('ALLOWED  spiffe://partner.test/service/billing -> GET /orders: 200')),
    lines.join('\n'),
  );
  assert.ok(
    lines.some((l) => l.startsWith('REJECTED spiffe://partner.test/service/reports -> GET /orders: 403')),
    lines.join('\n'),
  );
});
