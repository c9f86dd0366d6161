import { render } from "preact";
import { WatchApp } from "./app";

const match = /^\/watch\/([1-9][0-9]*)\/?$/.exec(location.pathname);
const root = document.getElementById("app");
if (root && match) render(<WatchApp roomId={Number(match[1])} />, root);
