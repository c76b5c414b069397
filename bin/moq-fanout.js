#!/usr/bin/env node
// The `moq-fanout` command: runs the relay in this process (see launch.js).
import { launch } from "./launch.js";

await launch("moq-fanout");
