import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { execFile } from "node:child_process";
import {
  DATA_MARGIN_BYTES,
  dataLimitBytes,
  type HookGrants,
  NO_GRANTS,
  ownFiles,
  sandboxFlags,
  withDataLimit,
  WORKER_NICE,
  workerEnv,
} from "../../../src/hooks/sandbox.ts";

const HOOKS = "/etc/postern/hooks";
const MiB = 1024 * 1024;

function grants(overrides: Partial<HookGrants>): HookGrants {
  return { ...NO_GRANTS, ...overrides };
}

/** The value of `--name=value` among `flags`, or undefined. */
function flagValue(flags: string[], name: string): string | undefined {
  const found = flags.filter((f) => f.startsWith(`${name}=`) || f === name);
  assert.ok(found.length <= 1, `${name} appears ${found.length} times`);
  return found[0]?.slice(name.length + 1);
}

describe("ownFiles", () => {
  it("ownFiles() returns the hook module and its private folder", () => {
    assert.deepEqual(ownFiles(HOOKS, "post-data"), [
      "/etc/postern/hooks/post-data.ts",
      "/etc/postern/hooks/post-data",
    ]);
  });
});

describe("sandboxFlags", () => {
  it("sandboxFlags() gives exactly the deny-by-default flags when nothing is granted", () => {
    assert.deepEqual(sandboxFlags(HOOKS, "post-data", NO_GRANTS, 128 * MiB), [
      "run",
      "--no-prompt",
      "--no-remote",
      "--no-npm",
      "--no-config",
      "--no-lock",
      "--quiet",
      "--allow-read=/etc/postern/hooks/post-data.ts,/etc/postern/hooks/post-data",
      "--v8-flags=--max-old-space-size=128",
    ]);
  });

  it("sandboxFlags() grants no net, write, env, run, ffi, sys or all when nothing is granted", () => {
    const flags = sandboxFlags(HOOKS, "alias-exists", NO_GRANTS, 64 * MiB);
    for (const flag of flags) {
      assert.ok(
        !/^--allow-(net|write|env|run|ffi|sys|import|all)\b|^-A$/.test(flag),
        `unexpected ${flag}`,
      );
    }
    assert.ok(!flags.includes("--allow-read"), "a bare --allow-read grants every file");
    assert.equal(flags[0], "run");
    for (const needed of ["--no-prompt", "--no-remote", "--no-npm", "--no-config"]) {
      assert.ok(flags.includes(needed), needed);
    }
  });

  it("sandboxFlags() limits reads to hooks/<name>.ts and hooks/<name>/ of the given name", () => {
    const flags = sandboxFlags("/srv/conf/hooks", "alias-resolve", NO_GRANTS, 64 * MiB);
    assert.deepEqual(flagValue(flags, "--allow-read")!.split(","), [
      join("/srv/conf/hooks", "alias-resolve.ts"),
      join("/srv/conf/hooks", "alias-resolve"),
    ]);
  });

  it("sandboxFlags() adds each granted list after the hook's own files", () => {
    const flags = sandboxFlags(
      HOOKS,
      "post-data",
      {
        net: ["127.0.0.1:783", "spamd.internal"],
        read: ["/var/lib/lists"],
        write: ["/var/tmp/hook"],
        env: ["SPAMD_TOKEN", "LANG"],
        run: ["/usr/bin/spamc"],
      },
      256 * MiB,
    );
    assert.equal(
      flagValue(flags, "--allow-read"),
      "/etc/postern/hooks/post-data.ts,/etc/postern/hooks/post-data,/var/lib/lists",
    );
    assert.equal(flagValue(flags, "--allow-net"), "127.0.0.1:783,spamd.internal");
    assert.equal(flagValue(flags, "--allow-write"), "/var/tmp/hook");
    assert.equal(flagValue(flags, "--allow-env"), "SPAMD_TOKEN,LANG");
    assert.equal(flagValue(flags, "--allow-run"), "/usr/bin/spamc");
    assert.equal(flags.at(-1), "--v8-flags=--max-old-space-size=256");
  });

  it("sandboxFlags() adds only the lists that have entries", () => {
    const flags = sandboxFlags(HOOKS, "post-data", grants({ env: ["TZ"] }), 64 * MiB);
    assert.equal(flagValue(flags, "--allow-env"), "TZ");
    assert.equal(flagValue(flags, "--allow-net"), undefined);
    assert.equal(flagValue(flags, "--allow-write"), undefined);
    assert.equal(flagValue(flags, "--allow-run"), undefined);
  });

  it("sandboxFlags() writes a comma inside a path or host twice", () => {
    const flags = sandboxFlags(
      "/etc/a,b/hooks",
      "post-data",
      grants({
        read: ["/data/x,y"],
        write: ["/w,1"],
        net: ["h,ost"],
        env: ["A,B"],
        run: ["/r,un"],
      }),
      64 * MiB,
    );
    assert.equal(
      flagValue(flags, "--allow-read"),
      "/etc/a,,b/hooks/post-data.ts,/etc/a,,b/hooks/post-data,/data/x,,y",
    );
    assert.equal(flagValue(flags, "--allow-write"), "/w,,1");
    assert.equal(flagValue(flags, "--allow-net"), "h,,ost");
    assert.equal(flagValue(flags, "--allow-env"), "A,,B");
    assert.equal(flagValue(flags, "--allow-run"), "/r,,un");
  });

  it("sandboxFlags() rounds the heap cap down to MiB and never goes under 16 MiB", () => {
    const heap = (bytes: number) => sandboxFlags(HOOKS, "post-data", NO_GRANTS, bytes).at(-1);
    assert.equal(heap(100 * MiB + MiB - 1), "--v8-flags=--max-old-space-size=100");
    assert.equal(heap(16 * MiB), "--v8-flags=--max-old-space-size=16");
    assert.equal(heap(15 * MiB), "--v8-flags=--max-old-space-size=16");
    assert.equal(heap(0), "--v8-flags=--max-old-space-size=16");
  });
});

describe("workerEnv", () => {
  const HOST_ENV: Record<string, string> = {
    HOME: "/home/postern",
    DENO_DIR: "/var/cache/deno",
    XDG_CACHE_HOME: "/home/postern/.cache",
    PATH: "/usr/bin:/bin",
    SECRET_TOKEN: "s3cr3t",
    AWS_ACCESS_KEY_ID: "AKIA",
    LANG: "C.UTF-8",
    SPAMD_TOKEN: "tok",
  };
  const lookup = (name: string) => HOST_ENV[name];

  it("workerEnv() passes only HOME, DENO_DIR, XDG_CACHE_HOME and PATH when nothing is granted", () => {
    assert.deepEqual(workerEnv(NO_GRANTS, lookup), {
      NO_COLOR: "1",
      DENO_NO_UPDATE_CHECK: "1",
      HOME: "/home/postern",
      DENO_DIR: "/var/cache/deno",
      XDG_CACHE_HOME: "/home/postern/.cache",
      PATH: "/usr/bin:/bin",
    });
  });

  it("workerEnv() adds the granted variables and no others", () => {
    const env = workerEnv(grants({ env: ["SPAMD_TOKEN", "LANG"] }), lookup);
    assert.deepEqual(Object.keys(env).sort(), [
      "DENO_DIR",
      "DENO_NO_UPDATE_CHECK",
      "HOME",
      "LANG",
      "NO_COLOR",
      "PATH",
      "SPAMD_TOKEN",
      "XDG_CACHE_HOME",
    ]);
    assert.equal(env.SPAMD_TOKEN, "tok");
    assert.equal(env.LANG, "C.UTF-8");
  });

  it("workerEnv() leaves out variables that are not set, granted or not", () => {
    const env = workerEnv(
      grants({ env: ["UNSET_VAR"] }),
      (name) => name === "PATH" ? "/bin" : undefined,
    );
    assert.deepEqual(env, { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1", PATH: "/bin" });
  });

  it("workerEnv() asks the lookup only for the base names and the granted ones", () => {
    const asked: string[] = [];
    workerEnv(grants({ env: ["X_GRANTED"] }), (name) => {
      asked.push(name);
      return undefined;
    });
    assert.deepEqual(asked.sort(), ["DENO_DIR", "HOME", "PATH", "XDG_CACHE_HOME", "X_GRANTED"]);
  });
});

describe("withDataLimit", () => {
  it("dataLimitBytes() adds the margin and 8 MiB per V8 platform thread beyond the first, up to 16", () => {
    assert.equal(DATA_MARGIN_BYTES, 608 * MiB);
    assert.equal(dataLimitBytes(64 * MiB, 1), 672 * MiB);
    assert.equal(dataLimitBytes(64 * MiB, 2), 672 * MiB);
    assert.equal(dataLimitBytes(64 * MiB, 4), 672 * MiB + 16 * MiB);
    assert.equal(dataLimitBytes(64 * MiB, 128), 672 * MiB + 15 * 8 * MiB);
  });

  it("withDataLimit() leaves the argv alone elsewhere than Linux", () => {
    assert.deepEqual(withDataLimit(["deno", "run"], 704 * MiB, "darwin"), ["deno", "run"]);
  });

  it("withDataLimit() runs the program WORKER_NICE steps below Postern's priority", async () => {
    assert.equal(WORKER_NICE, 10);
    // Field 19 of /proc/PID/stat is the nice value (16 after the command name).
    const niceOf = (stat: string) => Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]);
    const own = niceOf(await readFile("/proc/self/stat", "utf8"));
    const argv = withDataLimit(["/bin/cat", "/proc/self/stat"], 1024 * MiB, "linux");
    const stat = await new Promise<string>((resolve, reject) => {
      execFile(argv[0]!, argv.slice(1), (err, stdout) => err ? reject(err) : resolve(stdout));
    });
    assert.equal(niceOf(stat), Math.min(19, own + WORKER_NICE), stat);
  });

  it("withDataLimit() runs the program through /bin/sh under RLIMIT_DATA, as the same process", async () => {
    const argv = withDataLimit(
      ["/bin/sh", "-c", 'echo $$ $(ulimit -d) "$0"', "a b"],
      100 * MiB + 1,
      "linux",
    );
    assert.equal(argv[0], "/bin/sh");
    const out = await new Promise<string>((resolve, reject) => {
      const child = execFile(argv[0]!, argv.slice(1), (err, stdout) => {
        if (err) reject(err);
        else resolve(`${child.pid} ${stdout.trim()}`);
      });
    });
    const [pid, shellPid, limit, arg] = out.split(" ");
    assert.equal(shellPid, pid, "the program is the process started (exec)");
    assert.equal(limit, String(100 * 1024 + 1), "RLIMIT_DATA in KiB, rounded up");
    assert.equal(out.split(" ").slice(3).join(" "), "a b");
    assert.equal(arg, "a");
  });
});
