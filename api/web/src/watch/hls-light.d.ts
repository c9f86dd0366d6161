// hls.js ships no declarations for its light build (no subtitles, alternate audio or DRM,
// which the watch page does not use); its API is the full build's.
declare module "hls.js/light" {
  import Hls from "hls.js";
  export default Hls;
  export * from "hls.js";
}
