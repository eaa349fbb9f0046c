//! `byok-config-rule`: the AWS Lambda function behind the AWS Config custom
//! rule (cargo feature `config-rule`; deployed as `bootstrap` on the
//! `provided.al2023` runtime by deploy/config-rule.yaml). All logic is in
//! `byok_ceremony::bastion::config_rule`; this file only wires it to the
//! Lambda Runtime API.

use std::sync::Arc;

use byok_ceremony::bastion::config_rule::{ConfigRule, ConfigRuleError, Outcome};
use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let rule = Arc::new(ConfigRule::from_env().await.map_err(|e| {
        eprintln!("error: {e}");
        e
    })?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let rule = rule.clone();
        async move {
            let r: Result<Outcome, ConfigRuleError> = rule.handle(event.payload).await;
            if let Err(e) = &r {
                eprintln!("error: {e}");
            }
            r
        }
    }))
    .await
}
