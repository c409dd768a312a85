export * from './bundle.js';
export * from './errors.js';
export * from './http.js';
export * from './jwtsvid.js';
export * from './match.js';
export * from './source.js';
export * from './spiffeid.js';
export * from './static-source.js';
export * from './tls.js';
export * from './undici.js';
export * from './workloadapi/address.js';
export * from './workloadapi/backoff.js';
export * from './workloadapi/client.js';
export type * from './workloadapi/proto.js';
export {
  jsonToStruct,
  structToJson,
  WORKLOAD_API_HEADER,
  WORKLOAD_PROTO,
  workloadApiServiceDefinition,
} from './workloadapi/proto.js';
export * from './workloadapi/sources.js';
export * from './x509svid.js';
export {
  type CertificateFacts,
  type CertificatesInput,
  certificateFacts,
  certificatesToPem,
  parseCertificates,
  parsePrivateKey,
  privateKeyToPem,
} from './x509util.js';
