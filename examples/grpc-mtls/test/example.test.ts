import assert from 'node:assert/strict';
import { test } from 'node:test';
import { demo } from '../src/demo.js';

test('grpc-mtls demo: payment-processor OK, inventory PERMISSION_DENIED', async () => {
  const lines: string[] = [];
  const ok = await demo((l) => lines.push(l));
  assert.equal(ok, true, lines.join('\n'));
  assert.ok(
    lines.some((l) =>
      l.startsWith(
        'ALLOWED  spiffe://example.org/service/payment-processor -> helloworld.Greeter/SayHello: OK hello world, you are spiffe://example.org/service/payment-processor',
      ),
    ),
  );
  assert.ok(
    lines.some((l) =>
      l.startsWith('REJECTED spiffe://example.org/service/inventory -> helloworld.Greeter/SayHello: PERMISSION_DENIED'),
    ),
  );
});
