import { NestFactory } from '@nestjs/core';
import { X509Source } from '@spiffe-ts/core';
import { spiffeServerTls } from '@spiffe-ts/nestjs';
import { AppModule } from './app.module';

async function bootstrap() {
  // The SVID and trust bundle come from the Workload API named by SPIFFE_ENDPOINT_SOCKET and rotate live.
  const source = await X509Source.create({ timeoutMs: 15_000 });
  const tls = spiffeServerTls(source); // client certificates required, verified by SPIFFE ID
  const app = await NestFactory.create(AppModule.register(tls), { httpsOptions: tls.options });
  app.enableShutdownHooks(); // SIGTERM / SIGINT: close the app (and its SPIFFE module) before exiting
  await app.listen(Number(process.env.PORT ?? 8443), process.env.HOST ?? '127.0.0.1');
  console.log(JSON.stringify({ listening: await app.getUrl(), spiffeId: source.getX509Svid().id.toString() }));
}
void bootstrap();
