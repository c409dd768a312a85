export * from './bundle.js';
export * from './errors.js';
export * from './jwtsvid.js';
export * from './match.js';
export * from './spiffeid.js';
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
