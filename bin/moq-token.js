#!/usr/bin/env node
// The `moq-token` command: generate keys, sign and verify tokens (see launch.js).
import { launch } from "./launch.js";

await launch("moq-token");
