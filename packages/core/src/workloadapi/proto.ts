import type * as grpc from '@grpc/grpc-js';
import { fromJSON } from '@grpc/proto-loader';
import protobuf from 'protobufjs';

/**
 * The SPIFFE Workload API service, wire-compatible with the standard's workload.proto (no package: the
 * gRPC service name is `SpiffeWorkloadAPI`). Embedded as text so the built package needs no file lookup.
 */
export const WORKLOAD_PROTO = `
syntax = "proto3";
import "google/protobuf/struct.proto";

service SpiffeWorkloadAPI {
  rpc FetchX509SVID(X509SVIDRequest) returns (stream X509SVIDResponse);
  rpc FetchX509Bundles(X509BundlesRequest) returns (stream X509BundlesResponse);
  rpc FetchJWTSVID(JWTSVIDRequest) returns (JWTSVIDResponse);
  rpc FetchJWTBundles(JWTBundlesRequest) returns (stream JWTBundlesResponse);
  rpc ValidateJWTSVID(ValidateJWTSVIDRequest) returns (ValidateJWTSVIDResponse);
}

message X509SVIDRequest {}
message X509SVIDResponse {
  repeated X509SVID svids = 1;
  repeated bytes crl = 2;
  map<string, bytes> federated_bundles = 3;
}
message X509SVID {
  string spiffe_id = 1;
  bytes x509_svid = 2;
  bytes x509_svid_key = 3;
  bytes bundle = 4;
  string hint = 5;
}
message X509BundlesRequest {}
message X509BundlesResponse {
  repeated bytes crl = 1;
  map<string, bytes> bundles = 2;
}
message JWTSVIDRequest {
  repeated string audience = 1;
  string spiffe_id = 2;
}
message JWTSVIDResponse { repeated JWTSVID svids = 1; }
message JWTSVID {
  string spiffe_id = 1;
  string svid = 2;
  string hint = 3;
}
message JWTBundlesRequest {}
message JWTBundlesResponse { map<string, bytes> bundles = 1; }
message ValidateJWTSVIDRequest {
  string audience = 1;
  string svid = 2;
}
message ValidateJWTSVIDResponse {
  string spiffe_id = 1;
  google.protobuf.Struct claims = 2;
}
`;

/** The gRPC metadata header every Workload API request must carry. */
export const WORKLOAD_API_HEADER = 'workload.spiffe.io';

// Message shapes as @grpc/proto-loader decodes them (keepCase, bytes as Buffer, defaults on).
export interface X509SVIDMessage {
  spiffe_id: string;
  x509_svid: Buffer;
  x509_svid_key: Buffer;
  bundle: Buffer;
  hint: string;
}
export interface X509SVIDResponseMessage {
  svids: X509SVIDMessage[];
  crl: Buffer[];
  federated_bundles: Record<string, Buffer>;
}
export interface X509BundlesResponseMessage {
  crl: Buffer[];
  bundles: Record<string, Buffer>;
}
export interface JWTSVIDRequestMessage {
  audience: string[];
  spiffe_id: string;
}
export interface JWTSVIDMessage {
  spiffe_id: string;
  svid: string;
  hint: string;
}
export interface JWTSVIDResponseMessage {
  svids: JWTSVIDMessage[];
}
export interface JWTBundlesResponseMessage {
  bundles: Record<string, Buffer>;
}
export interface ValidateJWTSVIDRequestMessage {
  audience: string;
  svid: string;
}
export interface StructValue {
  nullValue?: 'NULL_VALUE' | 0;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: StructMessage;
  listValue?: { values: StructValue[] };
  kind?: string;
}
export interface StructMessage {
  fields: Record<string, StructValue>;
}
export interface ValidateJWTSVIDResponseMessage {
  spiffe_id: string;
  claims: StructMessage | null;
}

let cached: grpc.ServiceDefinition | undefined;

/** The SpiffeWorkloadAPI service definition for @grpc/grpc-js clients and servers. */
export function workloadApiServiceDefinition(): grpc.ServiceDefinition {
  if (cached) return cached;
  const root = new protobuf.Root();
  protobuf.parse(WORKLOAD_PROTO, root, { keepCase: true });
  const struct = protobuf.common.get('google/protobuf/struct.proto');
  if (struct) root.addJSON(struct.nested as protobuf.INamespace['nested'] & object);
  const pkg = fromJSON(root.toJSON(), {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  cached = pkg.SpiffeWorkloadAPI as grpc.ServiceDefinition;
  return cached;
}

/** google.protobuf.Struct → plain JSON object. */
export function structToJson(s: StructMessage | null | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s?.fields ?? {})) out[k] = valueToJson(v);
  return out;
}

function valueToJson(v: StructValue): unknown {
  switch (v.kind) {
    case 'numberValue':
      return v.numberValue;
    case 'stringValue':
      return v.stringValue;
    case 'boolValue':
      return v.boolValue;
    case 'structValue':
      return structToJson(v.structValue);
    case 'listValue':
      return (v.listValue?.values ?? []).map(valueToJson);
    default:
      return null;
  }
}

/** Plain JSON object → google.protobuf.Struct. */
export function jsonToStruct(obj: Record<string, unknown>): StructMessage {
  const fields: Record<string, StructValue> = {};
  for (const [k, v] of Object.entries(obj)) if (v !== undefined) fields[k] = jsonToValue(v);
  return { fields };
}

function jsonToValue(v: unknown): StructValue {
  if (v === null || v === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(jsonToValue) } };
  if (typeof v === 'object') return { structValue: jsonToStruct(v as Record<string, unknown>) };
  return { stringValue: String(v) };
}
