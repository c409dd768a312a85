export { type CliIo, runCli, USAGE } from './cli.js';
export * from './files.js';
export { type HelperOptions, runHelper } from './helper.js';
