// Node-RED settings for the orders comparison in BENCHMARKS.md (loadgen --compare-nodered).
// The flow is flows.json beside this file; the port, the sink and the secret come from the
// environment loadgen starts it with.
module.exports = {
    uiHost: "127.0.0.1",
    uiPort: parseInt(process.env.NODERED_PORT, 10),
    flowFile: __dirname + "/flows.json",
    userDir: process.env.NODERED_USER_DIR,
    httpAdminRoot: false,            // no editor: only the flow's own endpoint
    credentialSecret: false,
    functionGlobalContext: { crypto: require("crypto") },
    logging: { console: { level: "warn", metrics: false, audit: false } },
    editorTheme: { tours: false },
};
