import { DynamicModule, Module } from '@nestjs/common';
import { NestSpiffeTls, SpiffeModule } from '@spiffe-ts/nestjs';
import { OrdersController } from './orders/orders.controller';

// The TLS setup is built before NestFactory.create (it becomes httpsOptions), so the module receives it.
@Module({})
// biome-ignore lint/complexity/noStaticOnlyClass: a Nest dynamic module is a class with a static factory.
export class AppModule {
  static register(tls: NestSpiffeTls): DynamicModule {
    return { module: AppModule, imports: [SpiffeModule.forRoot({ tls })], controllers: [OrdersController] };
  }
}
