// Login by challenge and response: the password never travels. The server sends a fresh
// nonce with every connection; the client answers with its own nonce and
// HMAC-SHA256(key, both nonces, the volume, the user), the key derived from the password
// with scrypt (a guess at the password costs a recorded exchange's eavesdropper that much
// work). A recorded answer is worth nothing on another connection: its server nonce differs.
// The server proves in turn that it knows the key, over the same nonces.
import * as crypto from 'crypto';

/** What the client sends in its HELLO to log in. */
export interface Login {
  readonly user: string;
  /** The client's nonce (base64). */
  readonly nonce: string;
  /** HMAC of the exchange (base64). */
  readonly proof: string;
}

const NONCE_BYTES = 32;
/** Bounds on a nonce from the wire (base64 of 16 to 96 bytes). */
const NONCE_MIN_CHARS = 22;
const NONCE_MAX_CHARS = 128;
// scrypt's cost: 16 MiB and some 50 ms per derivation, done once per user and process.
const SCRYPT = { N: 2 ** 14, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };
const KEY_BYTES = 32;

export const newNonce = (): string => crypto.randomBytes(NONCE_BYTES).toString('base64');

export const isNonce = (v: unknown): v is string => typeof v === 'string' && v.length >= NONCE_MIN_CHARS && v.length <= NONCE_MAX_CHARS;

const keys = new Map<string, Promise<Buffer>>();

/** The key a user's password gives (salted by the user's name), derived once per process. */
export function loginKey(user: string, password: string): Promise<Buffer> {
  const id = JSON.stringify([user, password]);
  let key = keys.get(id);
  if (!key) {
    key = new Promise<Buffer>((resolve, reject) =>
      crypto.scrypt(password, `xlstack-login:${user}`, KEY_BYTES, SCRYPT, (e, k) => (e ? reject(e) : resolve(k))),
    );
    keys.set(id, key);
  }
  return key;
}

/** Everything both sides bind a proof to. */
export interface Exchange {
  readonly volume: string;
  readonly user: string;
  readonly serverNonce: string;
  readonly clientNonce: string;
}

function mac(key: Buffer, role: 'client' | 'server', x: Exchange): string {
  // JSON keeps the fields apart: no two exchanges serialise alike.
  const text = JSON.stringify(['xlstack-login-v1', role, x.volume, x.user, x.serverNonce, x.clientNonce]);
  return crypto.createHmac('sha256', key).update(text).digest('base64');
}

export const clientProof = (key: Buffer, x: Exchange): string => mac(key, 'client', x);
export const serverProof = (key: Buffer, x: Exchange): string => mac(key, 'server', x);

/** Whether a proof from the wire is the expected one, in time independent of where they differ. */
export function proofMatches(expected: string, given: unknown): boolean {
  if (typeof given !== 'string') return false;
  const a = Buffer.from(expected, 'base64');
  const b = Buffer.from(given, 'base64');
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

/** The client's half: its login for a server's challenge. */
export function login(key: Buffer, user: string, volume: string, serverNonce: string): { login: Login; exchange: Exchange } {
  const clientNonce = newNonce();
  const exchange = { volume, user, serverNonce, clientNonce };
  return { login: { user, nonce: clientNonce, proof: clientProof(key, exchange) }, exchange };
}
