// Lays out the npm packages of a release for `npm pack` (scripts/release.sh
// runs it): `node npm/stage.js VERSION OUT TARGET=BINARY...` writes
// OUT/agentfs (the launcher, its version and its optional dependencies set
// to VERSION) and OUT/<os>-<cpu> per built target (one binary, `os`/`cpu`
// fields, no install scripts).
"use strict";

const fs = require("fs");
const path = require("path");

const PLATFORMS = {
  "x86_64-unknown-linux-gnu": { name: "linux-x64", os: "linux", cpu: "x64" },
  "aarch64-unknown-linux-gnu": { name: "linux-arm64", os: "linux", cpu: "arm64" },
  "aarch64-apple-darwin": { name: "darwin-arm64", os: "darwin", cpu: "arm64" },
  "x86_64-apple-darwin": { name: "darwin-x64", os: "darwin", cpu: "x64" },
};

const [version, out, ...built] = process.argv.slice(2);
if (!version || !out || built.length === 0) {
  console.error("usage: node npm/stage.js VERSION OUT TARGET=BINARY...");
  process.exit(2);
}
const root = path.join(__dirname, "..");
const write = (file, text, mode) => {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text, { mode });
};
const licenses = (dir) => {
  for (const f of ["LICENSE-MIT", "LICENSE-APACHE"]) fs.copyFileSync(path.join(root, f), path.join(dir, f));
};

const main = JSON.parse(fs.readFileSync(path.join(__dirname, "agentfs", "package.json"), "utf8"));
main.version = version;
for (const dep of Object.keys(main.optionalDependencies)) main.optionalDependencies[dep] = version;
const launcher = path.join(out, "agentfs");
write(path.join(launcher, "package.json"), JSON.stringify(main, null, 2) + "\n");
write(path.join(launcher, "bin", "agentfs.js"), fs.readFileSync(path.join(__dirname, "agentfs", "bin", "agentfs.js")), 0o755);
fs.copyFileSync(path.join(__dirname, "agentfs", "README.md"), path.join(launcher, "README.md"));
licenses(launcher);

for (const pair of built) {
  const [target, binary] = pair.split("=");
  const p = PLATFORMS[target];
  if (!p) {
    console.error(`unknown target ${target}`);
    process.exit(2);
  }
  const dir = path.join(out, p.name);
  const pkg = {
    name: `@agentfs/${p.name}`,
    version,
    description: `The agentfs binary for ${p.os} ${p.cpu} (installed by the agentfs package)`,
    license: main.license,
    repository: main.repository,
    os: [p.os],
    cpu: [p.cpu],
    files: ["bin/agentfs", "LICENSE-MIT", "LICENSE-APACHE"],
    preferUnplugged: true,
  };
  write(path.join(dir, "package.json"), JSON.stringify(pkg, null, 2) + "\n");
  write(path.join(dir, "bin", "agentfs"), fs.readFileSync(binary), 0o755);
  write(path.join(dir, "README.md"), `# ${pkg.name}\n\n${pkg.description}. See https://www.npmjs.com/package/agentfs.\n`);
  licenses(dir);
}
