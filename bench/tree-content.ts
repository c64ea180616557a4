/**
 * What a benchmark tree holds, file by file: the applications shape (the first seed's
 * `applications/` folder: `applications/<Company>/<Role>/{CV.md, cover_letter.txt, dossier.txt,
 * contact_list.json, CV_PDF/CV.pdf, CV_PDF/CV_v2.pdf}`) and two uniform profiles. Text files are
 * a few KB of word-salad English (compresses like real prose), PDFs are 50-300 KB of a PDF
 * skeleton around random bytes (real PDFs are compressed streams, so gzip and zstd gain nothing
 * on them). PDF sizes are chosen so the whole tree comes to the requested total.
 *
 * Every file's content is a pure function of (seed, path, variant): variant 0 is the original,
 * other variants are the "edited" versions `mutate` writes; `restoreTree` writes variant 0 back.
 * Small choices come from a seeded sfc32 PRNG, bulk bytes from AES-256-CTR keyed by a hash of
 * (seed, path, variant). No Math.random anywhere.
 *
 * Nothing here touches the disk: the layouts yield (spec, content) pairs and bench/generate.ts
 * writes them, caches the tree and mutates it.
 */
import { createCipheriv, createHash } from 'node:crypto';

/** Bump when the content or layout changes: old cached trees are then not reused. */
export const GENERATOR_VERSION = 1;

export const DEFAULT_FILES = 20_000;
export const DEFAULT_BYTES = 2 ** 30; // 1 GiB
export const DEFAULT_SEED = 1;

/** applications: the PDFs' smallest size unless a tree asks for less. */
export const PDF_MIN = 50 * 1024;
const PDF_MAX = 300 * 1024;
const FILES_PER_ROLE = 6;

export type FileKind = 'cv' | 'cover' | 'dossier' | 'contacts' | 'pdf' | 'random' | 'prose';

/**
 * applications: the seed's shape (above). random / text: `files` files of equal size under
 * `applications/part-NNN/`, of random bytes (already compressed data) or of word-salad prose
 * (compressible): restic's compression measured on each kind alone.
 */
export type TreeProfile = 'applications' | 'random' | 'text';

export interface FileSpec {
  /** Relative to the tree's root, e.g. "applications/Acme Corp/SRE/CV.md". */
  path: string;
  kind: FileKind;
  /** Size of variant 0 (text files) or of every variant (PDFs). */
  size: number;
  company: string;
  role: string;
}

export interface Tree {
  /** Folder that holds `applications/` (the backup source's root). */
  root: string;
  key: string;
  /** Absent in trees cached before profiles existed: 'applications'. */
  profile?: TreeProfile;
  seed: number;
  files: number;
  bytes: number;
  textBytes: number;
  /** Incompressible bytes: the PDFs' (applications) or the files' (random). */
  pdfBytes: number;
  specs: FileSpec[];
}

// ---------------------------------------------------------------------------------------------
// Randomness

/** 128-bit seed from a string (cyrb128). */
function hashSeed(text: string): [number, number, number, number] {
  let h1 = 1779033703, h2 = 3144134277, h3 = 1013904242, h4 = 2773480762;
  for (let i = 0; i < text.length; i++) {
    const k = text.charCodeAt(i);
    h1 = h2 ^ Math.imul(h1 ^ k, 597399067);
    h2 = h3 ^ Math.imul(h2 ^ k, 2869860233);
    h3 = h4 ^ Math.imul(h3 ^ k, 951274213);
    h4 = h1 ^ Math.imul(h4 ^ k, 2716044179);
  }
  h1 = Math.imul(h3 ^ (h1 >>> 18), 597399067);
  h2 = Math.imul(h4 ^ (h2 >>> 22), 2869860233);
  h3 = Math.imul(h1 ^ (h3 >>> 17), 951274213);
  h4 = Math.imul(h2 ^ (h4 >>> 19), 2716044179);
  h1 ^= h2 ^ h3 ^ h4; h2 ^= h1; h3 ^= h1; h4 ^= h1;
  return [h1 >>> 0, h2 >>> 0, h3 >>> 0, h4 >>> 0];
}

/** sfc32: small, fast, good enough for choices (not for bulk bytes: see randomBytesFor). */
export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: string) {
    [this.a, this.b, this.c, this.d] = hashSeed(seed);
    for (let i = 0; i < 12; i++) this.next();
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.a >>>= 0; this.b >>>= 0; this.c >>>= 0; this.d >>>= 0;
    let t = (this.a + this.b) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.d = (this.d + 1) | 0;
    t = (t + this.d) | 0;
    this.c = (this.c + t) | 0;
    return (t >>> 0) / 4294967296;
  }

  /** Integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }
}

/** `length` incompressible bytes, a pure function of `label` (AES-256-CTR keystream). */
function randomBytesFor(label: string, length: number): Buffer {
  const key = createHash('sha256').update(label).digest();
  const iv = createHash('md5').update(label).digest();
  return createCipheriv('aes-256-ctr', key, iv).update(Buffer.alloc(length));
}

// ---------------------------------------------------------------------------------------------
// Vocabulary

const COMPANY_A = ['Acme', 'Globex', 'Initech', 'Umbrella', 'Hooli', 'Vandelay', 'Soylent', 'Wonka', 'Tyrell', 'Cyberdyne', 'Stark', 'Wayne', 'Oscorp', 'Aperture', 'Massive', 'Dunder', 'Pied Piper', 'Gringotts', 'Monarch', 'Nakatomi', 'Virtucon', 'Ollivander', 'Prestige', 'Sterling', 'Blue Harbor', 'Northwind', 'Contoso', 'Fabrikam', 'Tailspin', 'Litware', 'Adventure', 'Wide World', 'Proseware', 'Lucerne', 'Margie', 'Alpine', 'Coho', 'Fourth Coffee', 'Humongous', 'Trey'];
const COMPANY_B = ['', 'Data', 'Cloud', 'Health', 'Logistics', 'Robotics', 'Energy', 'Finance', 'Media', 'Bio', 'Security', 'Mobility', 'Retail', 'Foods', 'Insurance', 'Analytics', 'Labs', 'Games', 'Travel', 'Learning'];
const COMPANY_C = ['Corp', 'Inc', 'GmbH', 'Ltd', 'SA', 'Group', 'Systems', 'Technologies', 'Partners', 'Holdings', 'AG', 'BV'];
const ROLE_LEVEL = ['', 'Junior', 'Senior', 'Staff', 'Principal', 'Lead', 'Head of', 'Associate'];
const ROLE_TITLE = ['Platform Engineer', 'Data Engineer', 'SRE', 'Backend Engineer', 'Frontend Engineer', 'Full-Stack Developer', 'ML Engineer', 'Data Scientist', 'DevOps Engineer', 'Security Engineer', 'Product Manager', 'Engineering Manager', 'QA Engineer', 'Mobile Developer', 'Cloud Architect', 'Solutions Architect', 'Analytics Engineer', 'Database Administrator', 'Technical Writer', 'Developer Advocate', 'Infrastructure Engineer', 'Software Engineer', 'Research Engineer', 'Embedded Engineer'];
const FIRST = ['Alex', 'Sam', 'Jordan', 'Taylor', 'Morgan', 'Casey', 'Jamie', 'Robin', 'Maria', 'Chen', 'Fatima', 'Lukas', 'Sofia', 'Mateo', 'Aisha', 'Noah', 'Emma', 'Liam', 'Olivia', 'Yuki', 'Priya', 'Omar', 'Elena', 'Jonas', 'Ines', 'Pavel', 'Grace', 'Tariq', 'Hannah', 'Diego'];
const LAST = ['Smith', 'Garcia', 'Müller', 'Rossi', 'Nguyen', 'Kowalski', 'Dubois', 'Silva', 'Kim', 'Patel', 'Cohen', 'Okafor', 'Larsen', 'Novak', 'Santos', 'Schmidt', 'Ivanova', 'Tanaka', 'Haddad', 'Brown', 'Moreau', 'Jansen', 'Fischer', 'Costa'];
const VERBS = ['designed', 'built', 'migrated', 'automated', 'scaled', 'led', 'reduced', 'improved', 'shipped', 'owned', 'rewrote', 'introduced', 'mentored', 'optimised', 'launched', 'maintained', 'documented', 'monitored', 'refactored', 'integrated'];
const THINGS = ['the billing pipeline', 'a Kubernetes platform', 'the data warehouse', 'CI/CD for 40 services', 'the on-call rotation', 'a feature store', 'the search cluster', 'PostgreSQL replication', 'the event bus', 'observability dashboards', 'an internal developer portal', 'the recommendation engine', 'Terraform modules', 'the authentication service', 'nightly ETL jobs', 'a Kafka ingestion layer', 'the mobile release train', 'cost reporting', 'incident reviews', 'the API gateway'];
const RESULTS = ['cutting costs by 30%', 'halving p99 latency', 'with zero downtime', 'for 2M daily users', 'saving 12 engineer-hours a week', 'raising test coverage to 85%', 'across three regions', 'ahead of schedule', 'reducing incidents by 40%', 'for a team of eight', 'under SOC 2 constraints', 'in six weeks'];
const SKILLS = ['TypeScript', 'Go', 'Python', 'Rust', 'Java', 'Kotlin', 'SQL', 'PostgreSQL', 'MongoDB', 'Redis', 'Kafka', 'Kubernetes', 'Terraform', 'AWS', 'GCP', 'Azure', 'Docker', 'Temporal', 'Airflow', 'dbt', 'Spark', 'React', 'GraphQL', 'gRPC', 'Prometheus', 'Grafana', 'Linux', 'Ansible'];
const WORDS = ['the', 'team', 'company', 'market', 'product', 'customers', 'growth', 'platform', 'strategy', 'revenue', 'funding', 'engineering', 'culture', 'roadmap', 'hiring', 'remote', 'office', 'series', 'competitors', 'launch', 'partners', 'quarter', 'pricing', 'retention', 'stack', 'open', 'source', 'data', 'users', 'mission', 'values', 'interview', 'process', 'salary', 'benefits', 'notes', 'recent', 'news', 'acquired', 'expanding', 'europe', 'regulation', 'security', 'compliance', 'and', 'of', 'with', 'for', 'in', 'on', 'is', 'are', 'their', 'new', 'strong', 'fast', 'small', 'large'];
const UNIVERSITIES = ['TU Munich', 'ETH Zurich', 'University of Lisbon', 'KTH Stockholm', 'Politecnico di Milano', 'University of Warsaw', 'Sorbonne University', 'University of Edinburgh', 'TU Delft', 'Charles University'];

function words(rng: Prng, count: number): string {
  const out: string[] = [];
  for (let i = 0; i < count; i++) out.push(rng.pick(WORDS));
  const text = out.join(' ');
  return `${text.charAt(0).toUpperCase()}${text.slice(1)}.`;
}

function achievement(rng: Prng): string {
  const verb = rng.pick(VERBS);
  return `${verb.charAt(0).toUpperCase()}${verb.slice(1)} ${rng.pick(THINGS)}, ${rng.pick(RESULTS)}.`;
}

function person(rng: Prng): string {
  return `${rng.pick(FIRST)} ${rng.pick(LAST)}`;
}

/** Repeats `block` until the text reaches `target` characters, then cuts at a line end. */
function fill(header: string, target: number, block: () => string): string {
  let text = header;
  while (text.length < target) text += block();
  const cut = text.lastIndexOf('\n', target);
  return cut > header.length ? text.slice(0, cut + 1) : text;
}

function cvText(rng: Prng, spec: FileSpec): string {
  const name = person(rng);
  const header = `# ${name}\n\n**${spec.role}** application for **${spec.company}**\n\n${name.toLowerCase().replace(/[^a-z]+/g, '.')}@example.com · +49 151 ${rng.int(1000000, 9999999)} · linkedin.com/in/${name.toLowerCase().replace(/[^a-z]+/g, '-')}\n\n## Summary\n\n${words(rng, 40)} ${words(rng, 30)}\n\n## Skills\n\n${Array.from({ length: 12 }, () => rng.pick(SKILLS)).join(', ')}\n\n## Experience\n`;
  return fill(header, rng.int(3_000, 8_000), () => {
    const year = rng.int(2010, 2024);
    const bullets = Array.from({ length: rng.int(3, 6) }, () => `- ${achievement(rng)}\n`).join('');
    const education = rng.next() < 0.15 ? `\n## Education\n\nMSc Computer Science, ${rng.pick(UNIVERSITIES)}, ${year - 3}\n` : '';
    return `\n### ${`${rng.pick(ROLE_LEVEL)} ${rng.pick(ROLE_TITLE)}`.trim()}, ${rng.pick(COMPANY_A)} ${rng.pick(COMPANY_C)} (${year}–${year + rng.int(1, 4)})\n\n${bullets}${education}`;
  });
}

function coverText(rng: Prng, spec: FileSpec): string {
  const header = `Dear ${spec.company} hiring team,\n\nI am writing to apply for the ${spec.role} position. ${words(rng, 25)}\n\n`;
  return fill(header, rng.int(2_000, 4_000), () => `${achievement(rng)} ${words(rng, rng.int(15, 45))} ${achievement(rng)}\n\n`) + `Kind regards,\n${person(rng)}\n`;
}

function dossierText(rng: Prng, spec: FileSpec): string {
  const header = `${spec.company}: research dossier for ${spec.role}\n${'='.repeat(60)}\n\nFounded: ${rng.int(1985, 2022)}   Employees: ${rng.int(20, 20000)}   HQ: ${rng.pick(UNIVERSITIES).split(' ').pop()}\nStack: ${Array.from({ length: 6 }, () => rng.pick(SKILLS)).join(', ')}\n\n`;
  const topics = ['Business', 'Product', 'Engineering', 'Culture', 'Recent news', 'Interview notes', 'Open questions', 'Compensation'];
  return fill(header, rng.int(4_000, 12_000), () => `## ${rng.pick(topics)}\n\n${words(rng, rng.int(30, 90))} ${words(rng, rng.int(20, 60))}\n- ${words(rng, rng.int(6, 14))}\n- ${words(rng, rng.int(6, 14))}\n\n`);
}

function contactsText(rng: Prng, spec: FileSpec): string {
  const contacts = Array.from({ length: rng.int(3, 15) }, () => {
    const name = person(rng);
    const handle = name.toLowerCase().replace(/[^a-z]+/g, '.');
    return {
      name,
      title: `${rng.pick(ROLE_LEVEL)} ${rng.pick(ROLE_TITLE)}`.trim(),
      company: spec.company,
      email: `${handle}@${spec.company.toLowerCase().replace(/[^a-z]+/g, '')}.example`,
      phone: `+${rng.int(30, 49)} ${rng.int(100, 999)} ${rng.int(1000000, 9999999)}`,
      linkedin: `https://linkedin.com/in/${handle.replace(/\./g, '-')}`,
      lastContacted: `202${rng.int(3, 5)}-${String(rng.int(1, 12)).padStart(2, '0')}-${String(rng.int(1, 28)).padStart(2, '0')}`,
      notes: words(rng, rng.int(5, 25)),
    };
  });
  return `${JSON.stringify(contacts, null, 2)}\n`;
}

/** Paragraphs of word salad and achievements, exactly `spec.size` bytes (ASCII only). */
function proseText(rng: Prng, spec: FileSpec): string {
  const parts: string[] = [];
  let length = 0;
  while (length < spec.size) {
    const paragraph = `${words(rng, rng.int(20, 60))} ${achievement(rng)} ${words(rng, rng.int(10, 40))}\n\n`;
    parts.push(paragraph);
    length += paragraph.length;
  }
  return parts.join('').slice(0, spec.size);
}

const TEXT: Record<Exclude<FileKind, 'pdf' | 'random'>, (rng: Prng, spec: FileSpec) => string> = { cv: cvText, cover: coverText, dossier: dossierText, contacts: contactsText, prose: proseText };

/** A PDF skeleton around one incompressible "FlateDecode" stream, exactly `size` bytes. */
function pdfBytes(seed: number, spec: FileSpec, variant: number): Buffer {
  const label = `${seed}\0${spec.path}\0${variant}`;
  const rng = new Prng(label);
  const head = Buffer.from(`%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>\nendobj\n5 0 obj\n<< /Title (CV ${spec.role} - ${spec.company}) /Author (${person(rng)}) /Producer (pdfTeX-1.40.${rng.int(20, 26)}) /CreationDate (D:2024${String(rng.int(1, 12)).padStart(2, '0')}${String(rng.int(10, 28))}120000Z) >>\nendobj\n4 0 obj\n<< /Filter /FlateDecode /Length 0000000000 >>\nstream\n`, 'latin1');
  const tail = Buffer.from(`\nendstream\nendobj\nxref\n0 6\n0000000000 65535 f \ntrailer\n<< /Size 6 /Root 1 0 R /Info 5 0 R >>\nstartxref\n${head.length}\n%%EOF\n`, 'latin1');
  const bodyLength = Math.max(0, spec.size - head.length - tail.length);
  const patched = Buffer.from(head.toString('latin1').replace('/Length 0000000000', `/Length ${String(bodyLength).padStart(10, '0')}`), 'latin1');
  return Buffer.concat([patched, randomBytesFor(label, bodyLength), tail]);
}

/** The content of one file: variant 0 is the original, others the edits `mutate` writes. */
export function fileContent(seed: number, spec: FileSpec, variant = 0): Buffer {
  if (spec.kind === 'pdf') return pdfBytes(seed, spec, variant);
  if (spec.kind === 'random') return randomBytesFor(`${seed}\0${spec.path}\0${variant}`, spec.size);
  return Buffer.from(TEXT[spec.kind](new Prng(`${seed}\0${spec.path}\0${variant}`), spec), 'utf8');
}

// ---------------------------------------------------------------------------------------------
// Layouts

/** Companies and roles: unique folder names, 1-5 roles per company. */
function plan(seed: number, files: number): { company: string; role: string }[] {
  const rng = new Prng(`${seed}\0plan`);
  const roleCount = Math.max(1, Math.ceil(files / FILES_PER_ROLE));
  const companies = new Set<string>();
  const out: { company: string; role: string }[] = [];
  while (out.length < roleCount) {
    let company = '';
    for (let attempt = 0; company === '' || companies.has(company); attempt++) {
      const middle = rng.pick(COMPANY_B);
      company = [rng.pick(COMPANY_A), middle, rng.pick(COMPANY_C)].filter((p) => p !== '').join(' ');
      if (attempt > 20) company = `${company} ${companies.size}`;
    }
    companies.add(company);
    const roles = new Set<string>();
    const wanted = Math.min(rng.int(1, 5), roleCount - out.length);
    while (roles.size < wanted) roles.add(`${rng.pick(ROLE_LEVEL)} ${rng.pick(ROLE_TITLE)}`.trim());
    for (const role of roles) out.push({ company, role });
  }
  return out;
}

/** One file of a layout and its original content (variant 0). */
export interface GeneratedFile {
  spec: FileSpec;
  content: Buffer;
}

/** What tree.json records of a tree: everything but where it is. */
export type TreeSummary = Omit<Tree, 'root' | 'key'>;

/**
 * The applications shape, file by file: the text files first (their sizes decide the PDFs'
 * share of the byte total), then the PDFs, uniform in [lo, hi] around the mean that reaches the
 * total, within `pdfMin`-300 KB. Returns the summary, specs sorted by path.
 */
export function* applicationsFiles(files: number, bytes: number, seed: number, pdfMin = PDF_MIN): Generator<GeneratedFile, TreeSummary> {
  const roles = plan(seed, files);
  const specs: FileSpec[] = [];
  let textBytes = 0;
  for (const { company, role } of roles) {
    const folder = `applications/${company}/${role}`;
    for (const [name, kind] of [['CV.md', 'cv'], ['cover_letter.txt', 'cover'], ['dossier.txt', 'dossier'], ['contact_list.json', 'contacts']] as const) {
      const spec: FileSpec = { path: `${folder}/${name}`, kind, size: 0, company, role };
      const content = fileContent(seed, spec);
      spec.size = content.length;
      textBytes += content.length;
      specs.push(spec);
      yield { spec, content };
    }
  }
  const pdfCount = roles.length * 2;
  const mean = Math.min(PDF_MAX, Math.max(pdfMin, (bytes - textBytes) / pdfCount));
  const half = Math.min(mean - pdfMin, PDF_MAX - mean);
  const rng = new Prng(`${seed}\0pdf-sizes`);
  let pdfBytesTotal = 0;
  for (const { company, role } of roles) {
    for (const name of ['CV.pdf', 'CV_v2.pdf']) {
      const size = Math.round(mean - half + rng.next() * 2 * half);
      const spec: FileSpec = { path: `applications/${company}/${role}/CV_PDF/${name}`, kind: 'pdf', size, company, role };
      const content = fileContent(seed, spec);
      pdfBytesTotal += content.length;
      specs.push(spec);
      yield { spec, content };
    }
  }
  specs.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { seed, files: specs.length, bytes: textBytes + pdfBytesTotal, textBytes, pdfBytes: pdfBytesTotal, specs };
}

/** `files` files of equal size (random bytes or prose), 100 to a folder. */
export function* uniformFiles(profile: Exclude<TreeProfile, 'applications'>, files: number, bytes: number, seed: number): Generator<GeneratedFile, TreeSummary> {
  const size = Math.max(1, Math.floor(bytes / files));
  const specs: FileSpec[] = [];
  let total = 0;
  for (let i = 0; i < files; i++) {
    const folder = `part-${String(Math.floor(i / 100)).padStart(4, '0')}`;
    const spec: FileSpec = { path: `applications/${folder}/${profile === 'random' ? 'blob' : 'notes'}-${String(i).padStart(6, '0')}.${profile === 'random' ? 'bin' : 'txt'}`, kind: profile === 'random' ? 'random' : 'prose', size, company: folder, role: '' };
    const content = fileContent(seed, spec);
    total += content.length;
    specs.push(spec);
    yield { spec, content };
  }
  return { profile, seed, files, bytes: total, textBytes: profile === 'text' ? total : 0, pdfBytes: profile === 'random' ? total : 0, specs };
}
