/**
 * The slice of RFC 8941 Structured Field Values that WebTransport sub-protocol negotiation needs:
 * `wt-available-protocols` is a List of sf-strings, `wt-protocol` one sf-string. Parsing is lenient
 * in one way only: bare tokens are accepted as protocol names (older/odd clients); parameters are
 * parsed and ignored. Anything else (inner lists, numbers as members, bad escapes) is an error.
 */

function isAlpha(c: number): boolean {
	return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}
function isDigit(c: number): boolean {
	return c >= 0x30 && c <= 0x39;
}
function isLcAlpha(c: number): boolean {
	return c >= 0x61 && c <= 0x7a;
}
/** RFC 9110 tchar, plus ":" and "/" which sf-tokens also allow. */
function isTokenChar(c: number): boolean {
	if (isAlpha(c) || isDigit(c)) return true;
	return "!#$%&'*+-.^_`|~:/".includes(String.fromCharCode(c));
}

class SfCursor {
	s: string;
	pos = 0;
	constructor(s: string) {
		this.s = s;
	}
	peek(): number {
		return this.pos < this.s.length ? this.s.charCodeAt(this.pos) : -1;
	}
	skipSp(): void {
		while (this.peek() === 0x20) this.pos++;
	}
	skipOws(): void {
		while (this.peek() === 0x20 || this.peek() === 0x09) this.pos++;
	}

	/** An sf-string at the current '"'; null when malformed. */
	string(): string | null {
		this.pos++; // opening quote
		let out = "";
		for (;;) {
			const c = this.peek();
			if (c < 0) return null;
			this.pos++;
			if (c === 0x22) return out;
			if (c === 0x5c) {
				const e = this.peek();
				if (e !== 0x22 && e !== 0x5c) return null;
				this.pos++;
				out += String.fromCharCode(e);
			} else if (c < 0x20 || c > 0x7e) {
				return null;
			} else {
				out += String.fromCharCode(c);
			}
		}
	}

	token(): string {
		const start = this.pos;
		this.pos++;
		while (this.pos < this.s.length && isTokenChar(this.s.charCodeAt(this.pos))) this.pos++;
		return this.s.slice(start, this.pos);
	}

	/** Skips any bare item (for parameter values); false when malformed. */
	skipBareItem(): boolean {
		const c = this.peek();
		if (c === 0x22) return this.string() !== null;
		if (isAlpha(c) || c === 0x2a) {
			this.token();
			return true;
		}
		if (c === 0x3f) {
			// Boolean ?0 / ?1.
			this.pos++;
			const b = this.peek();
			if (b !== 0x30 && b !== 0x31) return false;
			this.pos++;
			return true;
		}
		if (c === 0x3a) {
			// Byte sequence :base64:.
			const end = this.s.indexOf(":", this.pos + 1);
			if (end < 0) return false;
			if (!/^[A-Za-z0-9+/=]*$/.test(this.s.slice(this.pos + 1, end))) return false;
			this.pos = end + 1;
			return true;
		}
		if (c === 0x2d || isDigit(c)) {
			// Integer or decimal.
			if (c === 0x2d) this.pos++;
			if (!isDigit(this.peek())) return false;
			while (isDigit(this.peek()) || this.peek() === 0x2e) this.pos++;
			return true;
		}
		return false;
	}

	/** `;key[=value]` parameters, ignored; false when malformed. */
	skipParameters(): boolean {
		while (this.peek() === 0x3b) {
			this.pos++;
			this.skipSp();
			const k = this.peek();
			if (!isLcAlpha(k) && k !== 0x2a) return false;
			this.pos++;
			for (;;) {
				const c = this.peek();
				if (isLcAlpha(c) || isDigit(c) || c === 0x5f || c === 0x2d || c === 0x2e || c === 0x2a) this.pos++;
				else break;
			}
			if (this.peek() === 0x3d) {
				this.pos++;
				if (!this.skipBareItem()) return false;
			}
		}
		return true;
	}

	/** A list member that names a protocol: an sf-string or (leniently) a token, then parameters. */
	protocolItem(): string | null {
		const c = this.peek();
		let value: string | null;
		if (c === 0x22) value = this.string();
		else if (isAlpha(c) || c === 0x2a) value = this.token();
		else return null;
		if (value === null || !this.skipParameters()) return null;
		return value;
	}
}

/**
 * Parses an sf-list whose members are strings (or tokens) naming protocols, in order. Returns
 * null when the value is not a valid list of that shape.
 */
export function parseProtocolList(value: string): string[] | null {
	const c = new SfCursor(value);
	c.skipSp();
	const out: string[] = [];
	if (c.peek() < 0) return out;
	for (;;) {
		const item = c.protocolItem();
		if (item === null) return null;
		out.push(item);
		c.skipOws();
		if (c.peek() < 0) return out;
		if (c.peek() !== 0x2c) return null;
		c.pos++;
		c.skipOws();
		if (c.peek() < 0) return null; // trailing comma
	}
}

/** Parses a single sf-string item (parameters ignored, tokens tolerated); null if malformed. */
export function parseProtocolItem(value: string): string | null {
	const list = parseProtocolList(value);
	return list !== null && list.length === 1 ? list[0] : null;
}

/** Serializes an sf-string; throws for characters an sf-string cannot carry (outside 0x20..0x7e). */
export function serializeSfString(s: string): string {
	let out = '"';
	for (let i = 0; i < s.length; i++) {
		const c = s.charCodeAt(i);
		if (c < 0x20 || c > 0x7e) throw new RangeError(`not representable as an sf-string: ${JSON.stringify(s)}`);
		if (c === 0x22 || c === 0x5c) out += "\\";
		out += s[i];
	}
	return `${out}"`;
}

/** Serializes a list of sf-strings, separated by ", " like Chromium does. */
export function serializeSfStringList(items: readonly string[]): string {
	return items.map(serializeSfString).join(", ");
}
