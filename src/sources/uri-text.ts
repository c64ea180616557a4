/** Text of connection URIs (MongoDB, PostgreSQL), shared by their parsers. */

/** Percent-decodes a URI component, or returns it as written when it is not valid percent-encoding. */
export function decodeComponent(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
