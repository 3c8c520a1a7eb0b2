// npm mailauth as an interop peer of scop-dkim: verifies many messages in
// one process with the library's dkimVerify and an in-memory resolver (the
// same lookup the CLI's --dns-cache does).
//
// Usage: node mailauth_peer.js NODE_MODULES MANIFEST
//   MANIFEST: {"dns": {name: txt}, "files": [path...]}
//   prints {path: [{"result": "pass"|..., "comment": str, "s": sel, "a": alg}]}
'use strict';
const fs = require('fs');
const [, , modules, manifestPath] = process.argv;
const { dkimVerify } = require(modules + '/mailauth/lib/dkim/verify');
const m = JSON.parse(fs.readFileSync(manifestPath, 'utf-8'));

// TXT answers as character-strings of at most 255 bytes, as DNS gives them.
const dns = {};
for (const [name, txt] of Object.entries(m.dns)) {
    const chunks = [];
    for (let i = 0; i < txt.length; i += 255) chunks.push(txt.slice(i, i + 255));
    dns[name.toLowerCase().replace(/\.$/, '')] = [chunks];
}
const resolver = async (name, rr) => {
    const hit = rr === 'TXT' && dns[name.toLowerCase().replace(/\.$/, '')];
    if (!hit) {
        const err = new Error('not found');
        err.code = 'ENOTFOUND';
        throw err;
    }
    return hit;
};

(async () => {
    const out = {};
    for (const path of m.files) {
        const res = await dkimVerify(fs.readFileSync(path), { resolver });
        out[path] = res.results.map(r => ({
            result: r.status.result,
            comment: r.status.comment || '',
            s: r.selector || '',
            a: r.algo || ''
        }));
    }
    process.stdout.write(JSON.stringify(out));
})().catch(err => {
    console.error(err);
    process.exit(1);
});
