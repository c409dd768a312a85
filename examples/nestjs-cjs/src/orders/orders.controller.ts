import { Controller, Get } from '@nestjs/common';
import { SpiffeId } from '@spiffe-ts/core';
import { AllowSpiffeIds, PeerSpiffeId } from '@spiffe-ts/nestjs';

// Only the payment processor may call; every other verified peer gets 403 from the SPIFFE guard.
@Controller('orders')
@AllowSpiffeIds('spiffe://example.org/service/payment-processor')
export class OrdersController {
  @Get()
  list(@PeerSpiffeId() caller: SpiffeId | undefined) {
    return { orders: [{ id: 'o-1001', total: 42.5 }], servedTo: caller?.toString() };
  }
}
