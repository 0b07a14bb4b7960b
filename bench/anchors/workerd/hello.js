// workerd anchor: the JavaScript hello world from shared/anchors/README.md.
export default {
  async fetch(request, env, ctx) {
    return new Response("Hello world!");
  },
};
