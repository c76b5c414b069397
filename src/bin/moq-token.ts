/**
 * `moq-token`: generate keys, sign and verify moq-relay tokens. See src/auth/cli.ts.
 * @module
 */
import { runTokenCli } from "../auth/cli.ts";

process.exitCode = await runTokenCli(process.argv.slice(2));
