/** Terminal output shared by the bench commands: plain lines, and a progress line redrawn in place on a TTY. */
export interface BenchConsole {
	say(line: string): void;
	/** `final` prints the line for good; otherwise it replaces the current progress line (TTY only). */
	progress(line: string, final: boolean): void;
}

export function benchConsole(silent: boolean): BenchConsole {
	const tty = process.stderr.isTTY && !silent;
	return {
		say(line) {
			if (!silent) console.log(line);
		},
		progress(line, final) {
			if (silent) return;
			if (final) {
				if (tty) process.stderr.write("\r\x1b[2K");
				console.log(line);
			} else if (tty) process.stderr.write(`\r\x1b[2K${line}`);
		},
	};
}
