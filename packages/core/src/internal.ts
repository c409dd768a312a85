/**
 * `@spiffe-ts/core/internal`: the Workload API's wire definitions, for `@spiffe-ts/dev-server` and tests that
 * serve the Workload API themselves. Not covered by semver: it changes with the dev server.
 */
export {
  type JWTBundlesResponseMessage,
  type JWTSVIDResponseMessage,
  jsonToStruct,
  type StructMessage,
  type StructValue,
  structToJson,
  type ValidateJWTSVIDResponseMessage,
  WORKLOAD_API_HEADER,
  WORKLOAD_PROTO,
  type WorkloadApiMessages,
  type WorkloadApiMethod,
  type WorkloadApiServiceDefinition,
  workloadApiServiceDefinition,
  type X509BundlesResponseMessage,
  type X509SVIDResponseMessage,
} from './workloadapi/proto.js';
