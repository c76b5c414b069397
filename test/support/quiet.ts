// The official clients log every protocol step with console.log; keep test output readable (set
// MOQ_TEST_LOG to see it). Imported for its effect by tests that run those clients in process.
if (!process.env.MOQ_TEST_LOG) {
	console.log = () => {};
	console.debug = () => {};
	console.info = () => {};
}
