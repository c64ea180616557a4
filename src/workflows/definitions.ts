/** Signals, queries and updates shared by workflows and their clients. */
export const WORKFLOW_TYPES = {
  doctor: 'doctorWorkflow',
} as const;
