export { type CliIo, cliVersion, runCli, USAGE } from './cli.js';
export { CliError, type CliErrorCode } from './errors.js';
export * from './files.js';
export {
  type HelperHealthOptions,
  type HelperJwtSvid,
  type HelperOptions,
  runHelper,
} from './helper.js';
export {
  type ConfigOverrides,
  helperOptionsFromConfig,
  loadHelperConfig,
  SPIFFE_HELPER_DEFAULT_AGENT_ADDRESS,
} from './helper-config.js';
