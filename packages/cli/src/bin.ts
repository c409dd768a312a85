import { runCli } from './cli.js';

// `spiffe-ts fetch x509 | head -3`: the reader is gone, nothing more can be said: stop quietly, as a
// program killed by SIGPIPE does, rather than die on an unhandled EPIPE error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

runCli(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    // runCli prints every error itself; this is only for a bug in it.
    process.stderr.write(`error [INTERNAL]: ${(err as Error).message}\n`);
    process.exitCode = 1;
  },
);
