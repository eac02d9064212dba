/**
 * Who an MCP session belongs to, as the bridge's HTTP front authenticated it (issue 19: one
 * authenticated identity per client).
 *
 * - OAuth clients (mcp/oauth/): `clientId` is the `client_id` the bridge issued at dynamic client
 *   registration (RFC 7591), `label` the name the owner gave the client when consenting
 *   ("home-assistant"). Neither comes from the client's own words: the name a client registers
 *   itself under (`client_name`) or gives in `initialize` is never used to grant anything.
 * - The static bearer token: `clientId` {@link STATIC_TOKEN_CLIENT_ID}, `label` {@link STATIC_TOKEN_LABEL}.
 * - stdio, or HTTP on loopback without any authentication: no identity (`undefined`).
 */
export interface ClientIdentity {
  /** The OAuth `client_id`, or {@link STATIC_TOKEN_CLIENT_ID}; 1–128 printable characters. */
  clientId: string;
  /** The owner's label of the client, `^[A-Za-z0-9_.-]{1,64}$`. */
  label: string;
}

/** `clientId` of sessions opened with the static bearer token. */
export const STATIC_TOKEN_CLIENT_ID = 'static-token';
/** `label` of sessions opened with the static bearer token. */
export const STATIC_TOKEN_LABEL = 'token';
/** What a label must look like: letters, digits, `_`, `.`, `-`; 1–64 characters. */
export const LABEL_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;
