// Throwaway TLS material for tests, made with the openssl command (Debian's openssl
// package): a CA, certificates it signed for a brick and clients, and a rogue CA's client.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

export interface CertFiles {
  readonly cert: string;
  readonly key: string;
}

export interface TestCerts {
  readonly ca: string;
  readonly brick: CertFiles;
  /** CN=client1 */
  readonly client: CertFiles;
  /** CN=intruder, signed by the same CA (so only auth.ssl-allow keeps it out). */
  readonly intruder: CertFiles;
  /** CN=client1, signed by another CA. */
  readonly rogue: CertFiles;
}

function openssl(dir: string, args: string[]): void {
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8', timeout: 30_000 });
  if (r.error) throw new Error(`openssl is needed for the TLS tests (apt-get install openssl): ${r.error.message}`);
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function ca(dir: string, name: string): string {
  openssl(dir, ['req', '-x509', ...EC, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${name}`]);
  return path.join(dir, `${name}.pem`);
}

function signed(dir: string, caName: string, file: string, cn: string): CertFiles {
  openssl(dir, ['req', ...EC, '-keyout', `${file}.key`, '-out', `${file}.csr`, '-subj', `/CN=${cn}`]);
  openssl(dir, ['x509', '-req', '-in', `${file}.csr`, '-CA', `${caName}.pem`, '-CAkey', `${caName}.key`, '-CAcreateserial', '-out', `${file}.pem`, '-days', '2']);
  return { cert: path.join(dir, `${file}.pem`), key: path.join(dir, `${file}.key`) };
}

/** Makes the whole set under `dir` (which must exist). */
export function makeCerts(dir: string): TestCerts {
  fs.mkdirSync(dir, { recursive: true });
  const caFile = ca(dir, 'test-ca');
  ca(dir, 'rogue-ca');
  return {
    ca: caFile,
    brick: signed(dir, 'test-ca', 'brick', 'brick'),
    client: signed(dir, 'test-ca', 'client1', 'client1'),
    intruder: signed(dir, 'test-ca', 'intruder', 'intruder'),
    rogue: signed(dir, 'rogue-ca', 'rogue', 'client1'),
  };
}

/** protocol/client or protocol/server options for TLS with `own` and the test CA. */
export const tlsOptions = (own: CertFiles, ca: string) =>
  `    option transport.socket.ssl-enabled on\n    option ssl.own-cert ${own.cert}\n    option ssl.private-key ${own.key}\n    option ssl.ca-list ${ca}\n`;
