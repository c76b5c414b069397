/**
 * A bare WebSocket upgrade request over a real socket, to read exactly what the relay answers
 * (status line, headers, body) where a WebSocket client would only report "failed".
 */
import { randomBytes } from "node:crypto";
import { request } from "node:http";

export interface UpgradeAnswer {
	/** 101 when the upgrade was accepted (the socket is then closed at once). */
	status: number;
	headers: Record<string, string | string[] | undefined>;
	body: string;
}

/** Sends `GET target` with WebSocket upgrade headers to 127.0.0.1:`port`. */
export function rawUpgrade(port: number, target: string, protocols?: string): Promise<UpgradeAnswer> {
	return new Promise((resolve, reject) => {
		const headers: Record<string, string> = {
			Connection: "Upgrade",
			Upgrade: "websocket",
			"Sec-WebSocket-Version": "13",
			"Sec-WebSocket-Key": randomBytes(16).toString("base64"),
		};
		if (protocols !== undefined) headers["Sec-WebSocket-Protocol"] = protocols;
		const req = request({ host: "127.0.0.1", port, path: target, headers, agent: false });
		req.on("upgrade", (res, socket) => {
			socket.destroy();
			resolve({ status: res.statusCode ?? 0, headers: res.headers, body: "" });
		});
		req.on("response", (res) => {
			const chunks: Buffer[] = [];
			res.on("data", (c: Buffer) => chunks.push(c));
			res.on("end", () =>
				resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }),
			);
			res.on("error", reject);
		});
		req.on("error", reject);
		req.end();
	});
}
