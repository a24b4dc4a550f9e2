//! The pod YAML a profile answers with: what the Kubernetes plugin's
//! `podTemplate(yaml: ...)` takes as it is. Only the build container is described; the
//! plugin adds its own `jnlp` agent container.

use super::rules::{Profile, Resources};
use super::settings::PodSettings;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// Label every build pod carries with its profile's name, for cost and usage breakdowns.
pub const PROFILE_LABEL: &str = "jenkins-autopilot/profile";

fn quantities(r: &Resources) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_string(), Quantity(r.cpu.to_string())),
        ("memory".to_string(), Quantity(r.memory.to_string())),
    ])
}

/// The pod: one build container with the requests and limits, labelled with the profile.
pub fn pod(
    profile_name: &str,
    requests: &Resources,
    limits: &Resources,
    pod: &PodSettings,
    image: &str,
) -> Pod {
    Pod {
        metadata: ObjectMeta {
            labels: Some(BTreeMap::from([(
                PROFILE_LABEL.to_string(),
                profile_name.to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: pod.container.clone(),
                image: Some(image.to_string()),
                command: Some(pod.command.clone()),
                resources: Some(ResourceRequirements {
                    requests: Some(quantities(requests)),
                    limits: Some(quantities(limits)),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The pod as YAML.
pub fn pod_yaml(pod: &Pod) -> String {
    serde_yaml::to_string(pod).expect("a Pod always serializes")
}

/// Limits for a learned size: the learned requests scaled as the nearest profile scales
/// its own (so a learned size keeps the ladder's headroom), never below the requests.
pub fn limits_for(requests: &Resources, like: &Profile) -> Resources {
    let scale = |req: u64, p_req: u64, p_lim: u64| -> u64 {
        if p_req == 0 {
            return req.max(p_lim);
        }
        ((req as f64) * (p_lim as f64 / p_req as f64)).ceil() as u64
    };
    Resources {
        cpu: super::Millicores::new(
            scale(
                requests.cpu.get(),
                like.requests.cpu.get(),
                like.limits.cpu.get(),
            )
            .max(requests.cpu.get()),
        ),
        memory: super::Bytes::new(
            scale(
                requests.memory.get(),
                like.requests.memory.get(),
                like.limits.memory.get(),
            )
            .max(requests.memory.get()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_yaml_parses_back_as_a_pod_with_the_resources() {
        let s = crate::profiles::rules::tests::defaults();
        let p = s.profiles.catalog().get("medium").unwrap().clone();
        let yaml = pod_yaml(&pod(
            &p.name,
            &p.requests,
            &p.limits,
            &s.profiles.pod,
            "maven:3",
        ));
        let back: Pod = serde_yaml::from_str(&yaml).unwrap();
        assert!(
            yaml.contains("apiVersion: v1") && yaml.contains("kind: Pod"),
            "{yaml}"
        );
        let c = &back.spec.unwrap().containers[0];
        assert_eq!(c.name, "build");
        assert_eq!(c.image.as_deref(), Some("maven:3"));
        let r = c.resources.as_ref().unwrap();
        assert_eq!(r.requests.as_ref().unwrap()["memory"].0, "512Mi");
        assert_eq!(r.limits.as_ref().unwrap()["cpu"].0, "1");
    }

    #[test]
    fn learned_limits_keep_the_ladder_ratio() {
        let s = crate::profiles::rules::tests::defaults();
        let medium = s.profiles.catalog().get("medium").unwrap().clone();
        let req = Resources {
            cpu: super::super::Millicores::new(300),
            memory: super::super::Bytes::mib(345),
        };
        let l = limits_for(&req, &medium);
        assert_eq!(l.cpu.get(), 600);
        assert_eq!(
            l.memory,
            super::super::Bytes::new((345.0f64 * 1024.0 * 1024.0 * 1.5).ceil() as u64)
        );
    }
}
