import { HttpException } from '@nestjs/common';
import type { SpiffeAuthError, SpiffeAuthErrorCode } from '@spiffe-ts/core';

/** The response body of a `SpiffeAuthException` (the shape of Nest's own 401/403 bodies, plus `code`). */
export interface SpiffeExceptionBody {
  /** 401 or 403. */
  statusCode: 401 | 403;
  /** The status text. */
  error: 'Unauthorized' | 'Forbidden';
  /** The stable denial code. */
  code: SpiffeAuthErrorCode;
  /** The client-safe message. */
  message: string;
}

/**
 * The HttpException the guard throws for a SPIFFE denial: Nest's exception filters answer it with its
 * status and `SpiffeExceptionBody`; a filter of your own can `@Catch(SpiffeAuthException)` and use `code`,
 * `headers` and the SpiffeAuthError in `cause`.
 */
export class SpiffeAuthException extends HttpException {
  /** Stable code of the denial. */
  readonly code: SpiffeAuthErrorCode;
  /** Headers for the response (`WWW-Authenticate` for bearer failures; the guard sets them already). */
  readonly headers: Readonly<Record<string, string>>;
  /** The core denial. */
  declare readonly cause: SpiffeAuthError;

  constructor(error: SpiffeAuthError) {
    const body: SpiffeExceptionBody = {
      statusCode: error.statusCode,
      error: error.statusCode === 401 ? 'Unauthorized' : 'Forbidden',
      code: error.code,
      message: error.message,
    };
    super(body, error.statusCode, { cause: error });
    this.code = error.code;
    this.headers = error.headers;
  }
}
