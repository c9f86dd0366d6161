// Builds the console and the watch page into one directory the API embeds:
//   console.html, watch.html            — the pages (never cached: they name the assets)
//   assets/<name>-<hash>.{js,css}       — content-hashed, cached for good
// Usage: node build.mjs [--outdir DIR] [--no-typecheck]
import { spawnSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const outIndex = args.indexOf("--outdir");
const outdir = resolve(outIndex >= 0 ? args[outIndex + 1] : join(here, "dist"));

if (!args.includes("--no-typecheck")) {
  const tsc = spawnSync(join(here, "node_modules", ".bin", "tsc"), ["--noEmit", "-p", here], { stdio: "inherit" });
  if (tsc.status !== 0) {
    console.error("build.mjs: type check failed");
    process.exit(1);
  }
}

rmSync(outdir, { recursive: true, force: true });
mkdirSync(join(outdir, "assets"), { recursive: true });

const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: {
    console: "src/console/main.tsx",
    watch: "src/watch/main.tsx",
    styles: "src/shared/styles.css",
  },
  outdir: join(outdir, "assets"),
  entryNames: "[name]-[hash]",
  chunkNames: "chunk-[hash]",
  bundle: true,
  splitting: true,
  format: "esm",
  target: ["chrome110", "firefox115", "safari16"],
  minify: true,
  sourcemap: false,
  legalComments: "linked",
  jsx: "automatic",
  jsxImportSource: "preact",
  metafile: true,
  logLevel: "warning",
  define: { "process.env.NODE_ENV": '"production"' },
});

const entryFile = (name) => {
  for (const [file, meta] of Object.entries(result.metafile.outputs)) {
    if (meta.entryPoint && file.includes(`/${name}-`) && !file.endsWith(".LEGAL.txt")) {
      return "/" + relative(outdir, resolve(here, file)).split("\\").join("/");
    }
  }
  throw new Error(`build.mjs: no output for ${name}`);
};

const page = (title, script) => `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light">
<title>${title}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${entryFile("styles")}">
<script type="module" src="${script}"></script>
</head>
<body>
<div id="app"><noscript>This page needs JavaScript.</noscript></div>
</body>
</html>
`;

writeFileSync(join(outdir, "console.html"), page("livegate console", entryFile("console")));
writeFileSync(join(outdir, "watch.html"), page("livegate", entryFile("watch")));
console.log(`build.mjs: wrote ${relative(process.cwd(), outdir) || "."}`);
