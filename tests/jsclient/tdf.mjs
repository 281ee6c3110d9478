// Drives @opentdf/client as its README configures it: a kasEndpoint, an AuthProvider, nothing else
// (no public key handed in, no path rewriting).
//   node tdf.mjs <encrypt|decrypt> <tdf|nano> <in> <out>      env: KAS_ENDPOINT, CLIENT_TOKEN, JS_CLIENT_DIR
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

// a dependency reads the DOM at import; under Node there is none
globalThis.document ??= { documentElement: { style: {} } };

const [op, format, input, output] = process.argv.slice(2);
const entry = path.join(process.env.JS_CLIENT_DIR, 'node_modules/@opentdf/client/dist/web/tdf3/index.js');
const { TDF3Client, NanoTDFClient } = await import(pathToFileURL(entry).href);

const kasEndpoint = process.env.KAS_ENDPOINT;
const token = process.env.CLIENT_TOKEN;
const authProvider = {  // a static bearer token through the AuthProvider interface
  async updateClientPublicKey() {},
  async withCreds(req) {
    return { ...req, headers: { ...req.headers, Authorization: `Bearer ${token}` } };
  },
};

const data = new Uint8Array(await readFile(input));
let result;
if (format === 'nano') {
  const client = new NanoTDFClient({ authProvider, kasEndpoint });
  result = op === 'encrypt' ? await client.encrypt(data) : await client.decrypt(data);
  result = new Uint8Array(result);
} else {
  const client = new TDF3Client({ authProvider, kasEndpoint, allowedKases: [kasEndpoint] });
  if (op === 'encrypt') {
    const source = new ReadableStream({ pull(c) { c.enqueue(data); c.close(); } });
    result = await (await client.encrypt({ offline: true, source })).toBuffer();
  } else {
    result = await (await client.decrypt({ source: { type: 'buffer', location: data } })).toBuffer();
  }
}
await writeFile(output, result);
