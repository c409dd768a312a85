/**
 * `@spiffe-ts/core/internal`: the Workload API's wire definitions, for `@spiffe-ts/dev-server` and tests that
 * serve the Workload API themselves. Not covered by semver: it changes with the dev server.
 */
export {
  type JWTBundlesRequestMessage,
  type JWTBundlesResponseMessage,
  type JWTSVIDMessage,
  type JWTSVIDRequestMessage,
  type JWTSVIDResponseMessage,
  jsonToStruct,
  type StructMessage,
  type StructValue,
  structToJson,
  type ValidateJWTSVIDRequestMessage,
  type ValidateJWTSVIDResponseMessage,
  WORKLOAD_API_HEADER,
  WORKLOAD_PROTO,
  type WorkloadApiMessages,
  type WorkloadApiMethod,
  type WorkloadApiServiceDefinition,
  workloadApiServiceDefinition,
  type X509BundlesRequestMessage,
  type X509BundlesResponseMessage,
  type X509SVIDMessage,
  type X509SVIDRequestMessage,
  type X509SVIDResponseMessage,
} from './workloadapi/proto.js';
