export { doctorWorkflow } from './doctor';
