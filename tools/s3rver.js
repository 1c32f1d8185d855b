#!/usr/bin/env node
/*
 * s3rver.js - a real S3 server for the tests: @20minutes/s3rver 4.0.4, which
 * verifies SigV4 signatures (access key and secret "S3RVER", us-east-1).
 *
 *   node tools/s3rver.js --port P --dir D --bucket NAME [--bucket NAME2 ...]
 *
 * Listens on 127.0.0.1:P (0: any free port), keeps its objects under D
 * (created if missing), creates the buckets, then prints one line
 * "ready PORT" on stdout with the port it really listens on. SIGTERM or
 * SIGINT close it and exit 0.
 *
 * The module comes from the prefix tools/deps.sh installs it into
 * (/usr/local/lib/sstfetch-node), or from $SSTF_S3RVER_MODULE (a path that
 * require() accepts) when set. Nothing of it lives in this repository.
 *
 * Exit codes: 0 closed on a signal; 1 any other failure; 2 bad arguments;
 * 3 the port is in use (EADDRINUSE: pick another port and retry);
 * 4 the module is missing or not 4.0.4 (run tools/deps.sh).
 */
'use strict';

const fs = require('fs');
const path = require('path');

const PREFIX = '/usr/local/lib/sstfetch-node';
const MODULE = '@20minutes/s3rver';
const VERSION = '4.0.4';

function die(code, msg) {
  process.stderr.write(`s3rver.js: ${msg}\n`);
  process.exit(code);
}

function parseArgs(argv) {
  const opt = { port: null, dir: null, buckets: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) die(2, `${a} needs a value`);
      return argv[++i];
    };
    if (a === '--port') {
      const v = val();
      if (!/^\d+$/.test(v) || Number(v) > 65535) die(2, `bad --port ${v}`);
      opt.port = Number(v);
    } else if (a === '--dir') {
      opt.dir = val();
    } else if (a === '--bucket') {
      opt.buckets.push(val());
    } else {
      die(2, `unknown argument ${a}\nusage: node tools/s3rver.js --port P --dir D --bucket NAME [--bucket NAME ...]`);
    }
  }
  if (opt.port === null || !opt.dir || opt.buckets.length === 0)
    die(2, 'usage: node tools/s3rver.js --port P --dir D --bucket NAME [--bucket NAME ...]');
  return opt;
}

/*
 * s3rver makes ListObjectsV2 continuation tokens with single DES
 * (crypto.createCipheriv('des', ...)), which OpenSSL 3 keeps in its legacy
 * provider: without it every truncated listing is a 500 InternalError.
 * Three-key DES with K1 = K2 = K3 is single DES (E_K(D_K(E_K(x))) = E_K(x)),
 * and des-ede3-cbc is in the default provider, so 'des' is mapped to it with
 * the key repeated: the tokens are the very bytes DES gives. Only when 'des'
 * is unavailable (node --openssl-legacy-provider does not need this).
 */
function shimSingleDes() {
  const crypto = require('crypto');
  try {
    crypto.createCipheriv('des', Buffer.alloc(8), Buffer.alloc(8));
    return;
  } catch (err) {
    /* unavailable: shim it */
  }
  const wrap = (fn) =>
    function (alg, key, iv, ...rest) {
      if (typeof alg === 'string' && /^des(-cbc)?$/i.test(alg) &&
          Buffer.isBuffer(key) && key.length === 8)
        return fn.call(this, 'des-ede3-cbc', Buffer.concat([key, key, key]), iv, ...rest);
      return fn.call(this, alg, key, iv, ...rest);
    };
  crypto.createCipheriv = wrap(crypto.createCipheriv);
  crypto.createDecipheriv = wrap(crypto.createDecipheriv);
}

function loadModule() {
  const override = process.env.SSTF_S3RVER_MODULE;
  let where;
  try {
    where = override
      ? require.resolve(path.resolve(override))
      : require.resolve(MODULE, { paths: [PREFIX] });
  } catch (err) {
    die(4, `cannot find ${MODULE} ` +
      (override ? `at SSTF_S3RVER_MODULE=${override}` : `under ${PREFIX}`) +
      ` (${err.code || err.message}); run tools/deps.sh to install ${MODULE}@${VERSION}`);
  }
  if (!override) {
    let version = '?';
    try {
      const pkg = path.join(PREFIX, 'node_modules', MODULE, 'package.json');
      version = JSON.parse(fs.readFileSync(pkg, 'utf8')).version;
    } catch (err) {
      /* reported below */
    }
    if (version !== VERSION)
      die(4, `${MODULE} under ${PREFIX} is ${version}, not ${VERSION}; run tools/deps.sh`);
  }
  try {
    return require(where);
  } catch (err) {
    die(4, `cannot load ${where}: ${err.message}; run tools/deps.sh`);
  }
}

async function main() {
  const opt = parseArgs(process.argv.slice(2));
  shimSingleDes();
  const S3rver = loadModule();
  fs.mkdirSync(opt.dir, { recursive: true });

  const server = new S3rver({
    port: opt.port,
    address: '127.0.0.1',
    directory: opt.dir,
    silent: true,
    configureBuckets: opt.buckets.map((name) => ({ name })),
  });

  /* What server.run() does, but with the listen error caught: run() leaves
   * it to an unhandled 'error' event. */
  let addr;
  try {
    await server.configureBuckets();
    addr = await new Promise((resolve, reject) => {
      server.httpServer = server
        .listen(opt.port, '127.0.0.1', () => resolve(server.httpServer.address()))
        .once('error', reject);
    });
  } catch (err) {
    if (err && err.code === 'EADDRINUSE')
      die(3, `127.0.0.1:${opt.port} is in use (EADDRINUSE)`);
    die(1, `cannot start: ${err && err.stack ? err.stack : err}`);
  }

  let closing = false;
  const stop = () => {
    if (closing)
      return;
    closing = true;
    /* Keep-alive and in-flight connections would hold close() open. */
    server.httpServer.closeAllConnections();
    server.close().then(() => process.exit(0), () => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  /* Synchronous on a pipe or a file on Linux: the line is out before the
   * parent reads it. */
  process.stdout.write(`ready ${addr.port}\n`);
}

main().catch((err) => die(1, err && err.stack ? err.stack : String(err)));
