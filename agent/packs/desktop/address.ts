/**
 * IP addresses for `desktop_fetch_webpage`: parsing, CIDR ranges, and the special-purpose ranges
 * a fetched URL may not reach unless they are listed (so a model cannot reach Node-RED's admin
 * API on loopback, a router's page, or a cloud metadata service).
 *
 * Ranges from the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and updates):
 * IPv4-mapped (`::ffff:0:0/96`), NAT64 (`64:ff9b::/96`, RFC 6052) and 6to4 (`2002::/16`,
 * RFC 3056) IPv6 addresses are judged by the IPv4 address they carry.
 */
import { isIP } from 'node:net';

/** An address as bytes: 4 (IPv4) or 16 (IPv6). */
export type IpBytes = Uint8Array;

/** A CIDR range. */
export interface Cidr {
  bytes: IpBytes;
  prefix: number;
  /** As written in the config. */
  text: string;
}

function parseV4(text: string): IpBytes | undefined {
  if (isIP(text) !== 4) return undefined;
  return Uint8Array.from(text.split('.').map(Number));
}

function parseV6(text: string): IpBytes | undefined {
  if (isIP(text) !== 6) return undefined;
  let head = text;
  const tailV4: number[] = [];
  const lastColon = head.lastIndexOf(':');
  if (head.slice(lastColon + 1).includes('.')) {
    const v4 = parseV4(head.slice(lastColon + 1))!;
    head = `${head.slice(0, lastColon + 1)}${((v4[0] << 8) | v4[1]).toString(16)}:${((v4[2] << 8) | v4[3]).toString(16)}`;
    tailV4.push(...v4);
  }
  const [left, right] = head.includes('::') ? head.split('::') : [head, undefined];
  const groups = (s: string | undefined) => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  const l = groups(left);
  const r = groups(right);
  const all = right === undefined ? l : [...l, ...new Array(8 - l.length - r.length).fill(0), ...r];
  const bytes = new Uint8Array(16);
  all.forEach((g, i) => { bytes[2 * i] = g >> 8; bytes[2 * i + 1] = g & 0xff; });
  return bytes;
}

/** Parses an IPv4 or IPv6 address (brackets and a `%zone` suffix are ignored); `undefined` if it is none. */
export function parseIp(text: string): IpBytes | undefined {
  const bare = text.replace(/^\[(.*)\]$/, '$1').replace(/%.*$/, '');
  return parseV4(bare) ?? parseV6(bare);
}

/**
 * Parses `a.b.c.d/n`, `x::y/n` or a single address (a /32 or /128).
 * @throws Error naming the expected form.
 */
export function parseCidr(text: string): Cidr {
  const [addr, len, ...rest] = text.split('/');
  const bytes = parseIp(addr);
  const max = bytes ? bytes.length * 8 : 0;
  const prefix = len === undefined ? max : /^\d{1,3}$/.test(len) ? Number(len) : NaN;
  if (!bytes || rest.length || !(prefix >= 0 && prefix <= max)) {
    throw new Error(`"${text}" is not an address range; write it as 192.168.1.0/24, 127.0.0.1 or fd00::/8`);
  }
  return { bytes, prefix, text };
}

function prefixEquals(a: IpBytes, b: IpBytes, prefix: number): boolean {
  if (a.length !== b.length) return false;
  const whole = prefix >> 3;
  for (let i = 0; i < whole; i++) if (a[i] !== b[i]) return false;
  const bits = prefix & 7;
  if (bits === 0) return true;
  const mask = (0xff << (8 - bits)) & 0xff;
  return (a[whole] & mask) === (b[whole] & mask);
}

const range = (text: string, label: string) => ({ ...parseCidr(text), label });

/** IPv6 ranges whose addresses carry an IPv4 address, and where it sits (byte offset). */
const EMBEDS_V4: Array<{ cidr: Cidr; offset: number }> = [
  { cidr: parseCidr('::ffff:0:0/96'), offset: 12 },
  { cidr: parseCidr('64:ff9b::/96'), offset: 12 },
  { cidr: parseCidr('2002::/16'), offset: 2 },
];

/** Special-purpose ranges, each with the word a refusal uses. */
const SPECIAL: Array<Cidr & { label: string }> = [
  range('0.0.0.0/8', 'this-network'),
  range('10.0.0.0/8', 'private'),
  range('100.64.0.0/10', 'carrier-grade NAT (also cloud metadata, e.g. 100.100.100.200)'),
  range('127.0.0.0/8', 'loopback'),
  range('169.254.0.0/16', 'link-local (also cloud metadata, 169.254.169.254)'),
  range('172.16.0.0/12', 'private'),
  range('192.0.0.0/24', 'IETF protocol assignments'),
  range('192.0.2.0/24', 'documentation'),
  range('192.168.0.0/16', 'private'),
  range('198.18.0.0/15', 'benchmarking'),
  range('198.51.100.0/24', 'documentation'),
  range('203.0.113.0/24', 'documentation'),
  range('224.0.0.0/4', 'multicast'),
  range('240.0.0.0/4', 'reserved'),
  range('::/96', 'unspecified, loopback or IPv4-compatible'),
  range('64:ff9b:1::/48', 'local NAT64'),
  range('100::/64', 'discard-only'),
  range('2001::/23', 'IETF protocol assignments (Teredo and others)'),
  range('2001:db8::/32', 'documentation'),
  range('fc00::/7', 'unique-local (also cloud metadata, e.g. fd00:ec2::254)'),
  range('fe80::/10', 'link-local'),
  range('fec0::/10', 'site-local'),
  range('ff00::/8', 'multicast'),
];

/** The IPv4 address inside a mapped, NAT64 or 6to4 IPv6 address, else the address itself. */
export function effectiveAddress(ip: IpBytes): IpBytes {
  if (ip.length !== 16) return ip;
  for (const { cidr, offset } of EMBEDS_V4) {
    if (prefixEquals(ip, cidr.bytes, cidr.prefix)) return ip.slice(offset, offset + 4);
  }
  return ip;
}

/** True when `ip` (or the IPv4 address it carries) lies in `cidr`. */
export function inCidr(ip: IpBytes, cidr: Cidr): boolean {
  return prefixEquals(ip, cidr.bytes, cidr.prefix) || prefixEquals(effectiveAddress(ip), cidr.bytes, cidr.prefix);
}

/** The special-purpose range `ip` falls in (by the IPv4 address it carries, if any), or `undefined` for a public address. */
export function specialRange(ip: IpBytes): string | undefined {
  const eff = effectiveAddress(ip);
  return SPECIAL.find((r) => prefixEquals(eff, r.bytes, r.prefix))?.label;
}

/** True when both texts are the same address (`::ffff:127.0.0.1` equals `127.0.0.1`). */
export function sameAddress(a: IpBytes, b: IpBytes): boolean {
  const ea = effectiveAddress(a);
  const eb = effectiveAddress(b);
  return ea.length === eb.length && ea.every((v, i) => v === eb[i]);
}
