import type * as grpc from '@grpc/grpc-js';
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

// Message shapes as @grpc/proto-loader decodes// Message shapes as decoded here: field names as in the .proto, bytes as Buffer, every field present.
export type X509SVIDRequestMessage = Record<string, never>;

/** One X.509-SVID of an X509SVIDResponse. */
export interface X509SVIDMessage {
  spiffe_id: string;
  x509_svid: Buffer;
  x509_svid_key: Buffer;
  bundle: Buffer;
  hint: string;
}

/** FetchX509SVID response: the workload's SVIDs, CRLs and federated bundles. */
export interface X509SVIDResponseMessage {
  svids: X509SVIDMessage[];
  crl: Buffer[];
  federated_bundles: Record<string, Buffer>;
}

/** FetchX509Bundles request (no fields). */
export type X509BundlesRequestMessage = Record<string, never>;

/** FetchX509Bundles response: CRLs and bundles by trust domain. */
export interface X509BundlesResponseMessage {
  crl: Buffer[];
  bundles: Record<string, Buffer>;
}

/** FetchJWTSVID request: audiences and, optionally, the SPIFFE ID wanted. */
export interface JWTSVIDRequestMessage {
  audience: string[];
  spiffe_id: string;
}

/** One JWT-SVID of a JWTSVIDResponse. */
export interface JWTSVIDMessage {
  spiffe_id: string;
  svid: string;
  hint: string;
}

/** FetchJWTSVID response. */
export interface JWTSVIDResponseMessage {
  svids: JWTSVIDMessage[];
}

/** FetchJWTBundles request (no fields). */
export type JWTBundlesRequestMessage = Record<string, never>;

/** FetchJWTBundles response: JWKS bytes by trust domain. */
export interface JWTBundlesResponseMessage {
  bundles: Record<string, Buffer>;
}

/** ValidateJWTSVID request. */
export interface ValidateJWTSVIDRequestMessage {
  audience: string;
  svid: string;
}

/** A google.protobuf.Value, as decoded here (the set member named by `kind`). */
export interface StructValue {
  nullValue?: 'NULL_VALUE' | 0;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: StructMessage;
  listValue?: { values: StructValue[] };
  kind?: string;
}

/** A google.protobuf.Struct, as decoded here. */
export interface StructMessage {
  fields: Record<string, StructValue>;
}

/** ValidateJWTSVID response: the token's SPIFFE ID and claims. */
export interface ValidateJWTSVIDResponseMessage {
  spiffe_id: string;
  claims: StructMessage | null;
}

/** Request and response message of each Workload API method. */
export interface WorkloadApiMessages {
  FetchX509SVID: { request: X509SVIDRequestMessage; response: X509SVIDResponseMessage };
  FetchX509Bundles: { request: X509BundlesRequestMessage; response: X509BundlesResponseMessage };
  FetchJWTSVID: { request: JWTSVIDRequestMessage; response: JWTSVIDResponseMessage };
  FetchJWTBundles: { request: JWTBundlesRequestMessage; response: JWTBundlesResponseMessage };
  ValidateJWTSVID: { request: ValidateJWTSVIDRequestMessage; response: ValidateJWTSVIDResponseMessage };
}

/** The name of a Workload API method. */
export type WorkloadApiMethod = keyof WorkloadApiMessages;

/** The SpiffeWorkloadAPI service, typed per method, for @grpc/grpc-js clients and servers. */
export type WorkloadApiServiceDefinition = {
  readonly [M in WorkloadApiMethod]: grpc.MethodDefinition<
    WorkloadApiMessages[M]['request'],
    WorkloadApiMessages[M]['response']
  >;
};

/** Protobuf encoding and decoding of one message type. */
interface MessageCodec<T> {
  encode(value: T): Buffer;
  /** Throws on bytes that are not this message. */
  decode(bytes: Uint8Array): T;
}

// What @grpc/proto-loader's conversion gave (and the interfaces above describe): every field present with its
// default, enums as names, the set member of a oneof named by its virtual field.
const TO_OBJECT: protobuf.IConversionOptions = { longs: String, enums: String, defaults: true, oneofs: true };

function messageCodec<T>(type: protobuf.Type): MessageCodec<T> {
  return {
    encode: (value) => {
      const bytes = type.encode(type.fromObject(value as Record<string, unknown>)).finish();
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
    },
    decode: (bytes) => type.toObject(type.decode(bytes), TO_OBJECT) as T,
  };
}

let cached: WorkloadApiServiceDefinition | undefined;

/** The SpiffeWorkloadAPI service definition for @grpc/grpc-js clients and servers. */
export function workloadApiServiceDefinition(): WorkloadApiServiceDefinition {
  if (cached) return cached;
  const root = new protobuf.Root();
  protobuf.parse(WORKLOAD_PROTO, root, { keepCase: true });
  const struct = protobuf.common.get('google/protobuf/struct.proto');
  if (struct) root.addJSON(struct.nested as protobuf.INamespace['nested'] & object);
  root.resolveAll();
  const service = root.lookupService('SpiffeWorkloadAPI');
  const method = <M extends WorkloadApiMethod>(
    name: M,
  ): grpc.MethodDefinition<WorkloadApiMessages[M]['request'], WorkloadApiMessages[M]['response']> => {
    const m = service.methods[name] as protobuf.Method;
    const request = messageCodec<WorkloadApiMessages[M]['request']>(m.resolvedRequestType as protobuf.Type);
    const response = messageCodec<WorkloadApiMessages[M]['response']>(m.resolvedResponseType as protobuf.Type);
    return {
      path: `/SpiffeWorkloadAPI/${name}`,
      requestStream: false,
      responseStream: m.responseStream === true,
      requestSerialize: request.encode,
      requestDeserialize: request.decode,
      responseSerialize: response.encode,
      responseDeserialize: response.decode,
    };
  };
  cached = {
    FetchX509SVID: method('FetchX509SVID'),
    FetchX509Bundles: method('FetchX509Bundles'),
    FetchJWTSVID: method('FetchJWTSVID'),
    FetchJWTBundles: method('FetchJWTBundles'),
    ValidateJWTSVID: method('ValidateJWTSVID'),
  };
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
