/** All activities, built from their dependencies. Workflows import only the type. */
import { createDoctorActivities, type DoctorDependencies } from './doctor';

export type ActivityDependencies = DoctorDependencies;

export function createActivities(deps: ActivityDependencies) {
  return {
    ...createDoctorActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
