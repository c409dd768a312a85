import { type DynamicModule, Module, type Provider } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { SpiffeGuard } from './guard.js';
import {
  SPIFFE_MODULE_OPTIONS,
  type SpiffeModuleAsyncOptions,
  type SpiffeModuleOptions,
  type SpiffeOptionsFactory,
  SpiffeService,
} from './service.js';

function serviceProvider(): Provider {
  return {
    provide: SpiffeService,
    inject: [SPIFFE_MODULE_OPTIONS, { token: HttpAdapterHost, optional: true }],
    useFactory: (options: SpiffeModuleOptions, host?: HttpAdapterHost) => new SpiffeService(options, host).init(),
  };
}

function asyncOptionsProviders(options: SpiffeModuleAsyncOptions): Provider[] {
  const kinds = [options.useFactory, options.useClass, options.useExisting].filter((k) => k !== undefined);
  if (kinds.length !== 1) {
    throw new TypeError('SpiffeModule.forRootAsync needs exactly one of useFactory, useClass, useExisting');
  }
  if (options.useFactory) {
    return [{ provide: SPIFFE_MODULE_OPTIONS, inject: options.inject ?? [], useFactory: options.useFactory }];
  }
  const factoryClass = (options.useClass ?? options.useExisting) as new (...args: never[]) => SpiffeOptionsFactory;
  const fromFactory: Provider = {
    provide: SPIFFE_MODULE_OPTIONS,
    inject: [factoryClass],
    useFactory: (factory: SpiffeOptionsFactory) => factory.createSpiffeOptions(),
  };
  return options.useClass ? [{ provide: factoryClass, useClass: factoryClass }, fromFactory] : [fromFactory];
}

/**
 * SPIFFE for NestJS: `SpiffeModule.forRoot({ tls, workloadApi, jwt })` in the root module (or `forRootAsync`
 * with useFactory, useClass or useExisting), then `@AllowSpiffeIds(...)` and `@RequireJwtSvid(...)` on
 * controllers or handlers.
 */
@Module({})
// biome-ignore lint/complexity/noStaticOnlyClass: Nest dynamic modules are classes with static forRoot/forRootAsync.
export class SpiffeModule {
  /** The module with static options. */
  static forRoot(options: SpiffeModuleOptions = {}): DynamicModule {
    return {
      module: SpiffeModule,
      global: options.isGlobal ?? true,
      providers: [{ provide: SPIFFE_MODULE_OPTIONS, useValue: options }, serviceProvider(), SpiffeGuard],
      exports: [SpiffeService, SpiffeGuard],
    };
  }

  /** The module with options built by a factory, a class, or an existing provider. */
  static forRootAsync(options: SpiffeModuleAsyncOptions): DynamicModule {
    return {
      module: SpiffeModule,
      global: options.isGlobal ?? true,
      imports: options.imports ?? [],
      providers: [...asyncOptionsProviders(options), serviceProvider(), SpiffeGuard],
      exports: [SpiffeService, SpiffeGuard],
    };
  }
}
