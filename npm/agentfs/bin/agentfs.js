#!/usr/bin/env node
// The `agentfs` command of the npm package: runs the prebuilt binary of the
// platform package npm installed beside it (@agentfs/<os>-<cpu>, an optional
// dependency chosen by its `os`/`cpu` fields; nothing is downloaded at
// install time), with the same arguments and stdio, passes on the signals
// this process gets, and exits as the binary did (its status, or its signal).
"use strict";

const { spawn } = require("child_process");

const platform = `${process.platform}-${process.arch}`;
const pkg = `@agentfs/${platform}`;

function binary() {
  try {
    return require.resolve(`${pkg}/bin/agentfs`);
  } catch {
    const known = ["linux-x64", "linux-arm64", "darwin-arm64", "darwin-x64"];
    const why = known.includes(platform)
      ? `${pkg} is not installed (was npm run with --omit=optional or --no-optional?); reinstall agentfs without it`
      : `agentfs has no prebuilt binary for ${platform} (there are: ${known.join(", ")}); build it with cargo install --path cli`;
    process.stderr.write(`agentfs: ${why}\n`);
    process.exit(1);
  }
}

const child = spawn(binary(), process.argv.slice(2), { stdio: "inherit" });
const forwarded = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"];
for (const sig of forwarded) {
  process.on(sig, () => {
    try {
      child.kill(sig);
    } catch {
      // It has exited already: its exit handler ends this process.
    }
  });
}
child.on("error", (e) => {
  process.stderr.write(`agentfs: cannot run the agentfs binary: ${e.message}\n`);
  process.exit(1);
});
child.on("exit", (code, signal) => {
  if (signal) {
    // Die of the same signal, so the caller sees what it would without npm.
    for (const sig of forwarded) process.removeAllListeners(sig);
    process.kill(process.pid, signal);
    return;
  }
  process.exit(code === null ? 1 : code);
});
