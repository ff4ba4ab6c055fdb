import assert from "node:assert/strict";
import { connect } from "node:net";
import { describe, it } from "node:test";
import { listenTcp } from "../../../src/runtime/mod.ts";

describe("listenTcp", () => {
  it("hands over connections as bytes: read, write, half-close, close", async () => {
    const listener = await listenTcp("127.0.0.1", 0);
    try {
      assert.match(listener.address, /^127\.0\.0\.1:\d+$/);
      const accepted = listener.accept();
      const client = connect(Number(listener.address.split(":")[1]), "127.0.0.1");
      let received = "";
      client.on("data", (chunk: Uint8Array) => received += new TextDecoder().decode(chunk));
      const closed = new Promise<void>((resolve) => client.on("close", () => resolve()));
      const conn = await accepted;
      assert.equal(conn.remoteAddress, "127.0.0.1");
      client.write("ping");
      const buffer = new Uint8Array(16);
      const n = await conn.read(buffer);
      assert.equal(new TextDecoder().decode(buffer.subarray(0, n ?? 0)), "ping");
      await conn.write(new TextEncoder().encode("pong"));
      // After our FIN the client still writes, and we still read.
      await conn.closeWrite();
      client.end("more");
      const rest = new Uint8Array(16);
      const m = await conn.read(rest);
      assert.equal(new TextDecoder().decode(rest.subarray(0, m ?? 0)), "more");
      assert.equal(await conn.read(rest), null);
      await closed;
      assert.equal(received, "pong");
      conn.close();
      conn.close();
      assert.equal(await conn.read(rest), null);
      await assert.rejects(conn.write(new Uint8Array(1)));
    } finally {
      listener.close();
    }
  });

  it("tells the client's address at accept, before anything is read", async () => {
    const listener = await listenTcp("127.0.0.1", 0);
    try {
      const port = Number(listener.address.split(":")[1]);
      for (const from of ["127.0.0.2", "127.0.3.4"]) {
        const accepted = listener.accept();
        const client = connect({ port, host: "127.0.0.1", localAddress: from });
        client.on("error", () => {});
        const conn = await accepted;
        assert.equal(conn.remoteAddress, from);
        conn.close();
        client.destroy();
      }
    } finally {
      listener.close();
    }
  });

  it("refuses an address in use with an error", async () => {
    const listener = await listenTcp("127.0.0.1", 0);
    try {
      const port = Number(listener.address.split(":")[1]);
      await assert.rejects(listenTcp("127.0.0.1", port));
    } finally {
      listener.close();
    }
  });

  it("rejects a pending accept() once closed", async () => {
    const listener = await listenTcp("127.0.0.1", 0);
    const pending = listener.accept();
    listener.close();
    listener.close();
    await assert.rejects(pending);
  });
});
